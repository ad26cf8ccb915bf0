"""`launch JOB --local` for a spec with `stages:`: the pipeline's driver on this machine.

The same driver as on Modal (`launcher.runtime.driver`) decides which stage runs; each stage
that runs gets its own supervisor (backends/local.py): one worker process per attempt, the
stage's own retries, `--preempt-after` in its first attempt. The summary is train's, as for a
single-stage job, followed by every stage's outcome, wall time and metrics.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import click

from launcher.backends.local import Folders, Options, Supervisor, set_up, summary
from launcher.runtime import driver, stages
from launcher.runtime.stages import StageFolders
from launcher.runtime.volume import LocalVolume
from launcher.spec.model import JobSpec


class Pipeline:
    """Runs one stage at a time under its supervisor; Ctrl-C reaches the running one."""

    def __init__(self, spec: JobSpec, folders: Folders, options: Options) -> None:
        self.spec, self.folders, self.options = spec, folders, options
        self.supervisors: dict[str, Supervisor] = {}
        self.current: Supervisor | None = None
        self.interrupted = False

    def run_stage(self, name: str) -> dict[str, Any]:
        if self.interrupted:
            return {"status": "interrupted", "error": "interrupted"}
        f = self.folders
        sup = Supervisor(self.spec, f.app_path, f.run_dir, f.volume_dir, self.options, stage=name)
        self.supervisors[name] = self.current = sup
        sup.run()
        final = sup.attempts[-1]
        result = next((a.result for a in reversed(sup.attempts) if a.result), {})
        if sup.interrupted:
            self.interrupted = True
            return {**result, "status": "interrupted", "error": "interrupted"}
        if final.outcome != "finished":  # permanent, or its retries ran out
            status = "permanent" if final.outcome == "permanent" else "failed"
            return {**result, "status": status, "error": final.message}
        return result

    def interrupt(self) -> None:
        self.interrupted = True
        if self.current is not None:
            self.current.interrupt()


def _attempts(sup: Supervisor | None) -> str:
    if sup is None:
        return ""
    return f"; attempts {len(sup.attempts)} (" + ", ".join(
        f"{a.number}: {a.outcome}" for a in sup.attempts) + ")"


def stage_lines(pipe: Pipeline, outcome: dict[str, Any]) -> list[str]:
    """One line per stage of the pipeline, in order: outcome, wall time, attempts, metrics."""
    results = {r["stage"]: r for r in outcome["stages"]}
    lines = []
    for name in pipe.spec.pipeline:
        result = results.get(name)
        if result is None:
            lines.append(f"  {name:<12} not run (an earlier stage failed)")
            continue
        status = result.get("status")
        wall = f", {result.get('wall_seconds', 0.0):.1f} s" if status != "skipped" else \
            " (unchanged since it finished; --rerun prepare runs it again)"
        error = f"; {result['error']}" if status != "finished" and result.get("error") else ""
        lines.append(f"  {name:<12} {status}{wall}{_attempts(pipe.supervisors.get(name))}"
                     f"{error}; {stages.describe(result.get('metrics') or {})}")
    return lines


def report(pipe: Pipeline, outcome: dict[str, Any], seconds: float) -> str:
    train = pipe.supervisors.get("train")
    head = summary(train, seconds).splitlines() if train is not None else [
        f"summary: {pipe.spec.name} failed", f"  wall time    {seconds:.1f} s"]
    if outcome["status"] != "finished" and train is not None and train.attempts[-1].outcome == "finished":
        head[0] = f"summary: {pipe.spec.name} failed"  # train finished, a later stage did not
    lines = [*head, f"  pipeline     {' -> '.join(pipe.spec.pipeline)}", *stage_lines(pipe, outcome)]
    if outcome["failed_stage"] is not None:
        failed = next(r for r in outcome["stages"] if r["stage"] == outcome["failed_stage"])
        lines.append(f"  failed in    {outcome['failed_stage']}: {failed.get('error') or failed.get('status')}")
    return "\n".join(lines)


def run_pipeline_local(spec: JobSpec, app_source: str, repo_root: Path, options: Options) -> int:
    folders = set_up(spec, app_source, repo_root, options)
    pipe = Pipeline(spec, folders, options)
    started = time.perf_counter()
    previous = signal.signal(signal.SIGINT, lambda *_: pipe.interrupt())
    try:
        # The supervisor sees the volume's committed state, as Modal's driver function does.
        outcome = driver.run_pipeline(spec, pipe.run_stage, StageFolders(folders.volume_dir, spec.name),
                                      LocalVolume(folders.volume_dir), rerun=options.rerun)
    finally:
        signal.signal(signal.SIGINT, previous)
    click.echo(report(pipe, outcome, time.perf_counter() - started), err=True)
    if pipe.interrupted:
        return 130
    return 0 if outcome["status"] == "finished" else 1
