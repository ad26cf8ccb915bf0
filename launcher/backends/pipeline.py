"""`launch JOB --local` for a spec with `stages:`: the pipeline's driver on this machine.

The very driver that runs on Modal (`launcher.runtime.pipeline.driver.Driver`) runs here, in its own
working copy of the volume, with the run's id as its call id: it takes the job's lease, records
its stage calls and decides which stage runs. Only its stage caller is local: `Pipeline`
(a `StageCaller`) runs a stage's call as that stage's supervisor (backends/local.py): one
worker process per attempt, the stage's own retries, `--preempt-after` in its first attempt,
each attempt working under the driver's lease. The summary is train's, as for a single-stage
job, followed by every stage's outcome, wall time and metrics.
"""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import click

from launcher.backends import jobfolder
from launcher.backends.local import (Options, Supervisor, control_dir, end_status, folders, holding, recording,
                                     stage_log, stop_signals, summary)
from launcher.backends.runinfo import local_record
from launcher.backends.workerproc import WorkerProcess
from launcher.errors import EXIT_BUG, EXIT_STOPPED, RunError
from launcher.runtime.control.stop import FolderRequests, StopRequest
from launcher.runtime.pipeline import driver, stages
from launcher.runtime.runs.recorder import Recorder
from launcher.runtime.pipeline.results import PipelineResult, StageName, Status
from launcher.runtime.storage.disk import StorageError
from launcher.runtime.storage.volume import LocalVolume
from launcher.spec.model import JobSpec


class Pipeline:
    """The driver's stage caller here: runs one stage at a time under its supervisor, all under
    the job's lock and one run id; Ctrl-C, SIGTERM and SIGHUP reach the running one."""

    def __init__(self, spec: JobSpec, run_dir: Path, volumes: Path, options: Options,
                 early: WorkerProcess | None = None, repo_root: Path | None = None,
                 source: str = "") -> None:
        """`repo_root`: where the stages' declared inputs are read (the repository); `source`:
        the spec file, for the run's record."""
        self.spec, self.run_dir, self.volumes, self.options = spec, run_dir, volumes, options
        self.repo_root = repo_root
        self.app_path = run_dir / "app.py"
        self.record = local_record(spec, source, repo_root or Path.cwd(), run_dir)
        self.run_id = self.record[0].run
        self.recorder: Recorder | None = None  # the run's record, once the job is held
        self.early = early  # for the first stage that runs
        self.supervisors: dict[str, Supervisor] = {}
        self.current: Supervisor | None = None
        self.stopped_by: int | None = None
        self.requested = False  # `launch stop` asked: the running stage stops, no later one starts
        self.calls: dict[str, tuple[str, str]] = {}  # call id -> (stage, the driver's lease)

    @property
    def interrupted(self) -> bool:
        return self.stopped_by is not None

    def spawn(self, stage: StageName, lease: str) -> str:
        """A call of `stage`; it runs when the driver waits for it (`get`)."""
        call = f"{self.run_id}-{stage}-{len(self.calls) + 1}"
        self.calls[call] = (stage, lease)
        if self.recorder is not None:
            self.recorder.stage_call(stage, call, save=False)  # with its first attempt
        return call

    def get(self, call_id: str) -> dict[str, Any]:
        if call_id not in self.calls:  # a driver restarted with another run's record: never here
            return {"status": Status.FAILED, "error": f"call {call_id} is not one of this run's"}
        return self.run_stage(*self.calls[call_id])

    def run_stage(self, name: StageName, lease: str = "") -> dict[str, Any]:
        """The stage's result, as JSON (a `StageResult`'s), as Modal's call would return it."""
        if self.requested:
            return {"status": Status.STOPPED, "error": "stopped before it started (launch stop)"}
        if self.interrupted:
            return {"status": Status.INTERRUPTED, "error": "interrupted"}
        early, self.early = self.early, None
        sup = Supervisor(self.spec, self.app_path, self.run_dir, self.volumes, self.options, early,
                         stage=name, run_id=self.run_id, lease=lease, inputs_root=self.repo_root)
        self.supervisors[name] = self.current = sup
        if self.stopped_by is not None:  # a stop that came while this stage was set up: its
            sup.stop(self.stopped_by)    # worker is stopped as soon as it starts
        sup.recorder = self.recorder
        if self.recorder is None:
            sup.run_attempts()
        else:
            with stage_log(self.recorder, name) as sup.log:
                sup.run_attempts()
        final = sup.attempts[-1]
        result = next((a.result for a in reversed(sup.attempts) if a.result), {})
        if final.outcome == "stopped":  # a stage that finished meanwhile stays finished; the
            self.requested = True        # next one does not start (see above)
            return {**result, "status": Status.STOPPED, "error": final.message or None}
        if sup.interrupted:
            self.stopped_by = self.stopped_by or sup.stopped_by
            return {**result, "status": Status.INTERRUPTED, "error": "interrupted"}
        if final.outcome != "finished":  # permanent, or its retries ran out
            status = Status.PERMANENT if final.outcome in ("permanent", "bug") else Status.FAILED
            bug = {"bug": True} if final.outcome == "bug" else {}
            return {**result, "status": status, "error": final.message, **bug}
        return result

    def stop(self, signum: int) -> None:
        if self.stopped_by is None:
            self.stopped_by = signum
        if self.current is not None:
            self.current.stop(signum)

    def interrupt(self) -> None:
        self.stop(signal.SIGINT)

    def request(self) -> None:
        """SIGUSR1 from `launch stop`: no later stage starts; the running stage's supervisor
        reads the request too (graceful: its loop stops; --now: its worker is killed)."""
        if StopRequest.of(FolderRequests(control_dir(self.volumes)).get(self.run_id)) is None:
            return
        self.requested = True
        if self.current is not None:
            self.current.request()


def _attempts(sup: Supervisor | None) -> str:
    if sup is None:
        return ""
    return f"; attempts {len(sup.attempts)} (" + ", ".join(
        f"{a.number}: {a.outcome}" for a in sup.attempts) + ")"


def stage_lines(pipe: Pipeline, outcome: PipelineResult) -> list[str]:
    """One line per stage of the pipeline, in order: outcome, wall time, attempts, metrics."""
    lines = []
    for name in pipe.spec.pipeline:
        result = outcome.stage(name)
        if result is None:
            why = "the run was refused" if outcome.error else \
                "the run was stopped" if outcome.status == Status.STOPPED else "an earlier stage failed"
            lines.append(f"  {name:<12} not run ({why})")
            continue
        status = result.status
        wall = f", {result.raw.get('wall_seconds', 0.0):.1f} s" if status != Status.SKIPPED else \
            " (unchanged since it finished; --rerun prepare runs it again)"
        error = f"; {result.error}" if status != Status.FINISHED and result.error else ""
        lines.append(f"  {name:<12} {status}{wall}{_attempts(pipe.supervisors.get(name))}"
                     f"{error}; {stages.describe(result.metrics)}")
    return lines


def report(pipe: Pipeline, outcome: PipelineResult, seconds: float) -> str:
    train = pipe.supervisors.get("train")
    head = summary(train, seconds).splitlines() if train is not None else [
        f"summary: {pipe.spec.name} failed", f"  wall time    {seconds:.1f} s"]
    if outcome.status != Status.FINISHED and train is not None and train.attempts[-1].outcome == "finished":
        head[0] = f"summary: {pipe.spec.name} failed"  # train finished, a later stage did not
    if outcome.status == Status.STOPPED:
        head[0] = f"summary: {pipe.spec.name} stopped (launch stop)"
    if pipe.stopped_by is not None:  # as a single job says it, whichever stage was running
        head[0] = f"summary: {pipe.spec.name} stopped ({signal.Signals(pipe.stopped_by).name})"
    lines = [*head, f"  pipeline     {' -> '.join(pipe.spec.pipeline)}", *stage_lines(pipe, outcome)]
    if outcome.error:  # refused before any stage ran: another run holds the job
        lines.append(f"  error        {outcome.error}")
    failed = outcome.stage(outcome.failed_stage) if outcome.failed_stage is not None else None
    if failed is not None:
        lines.append(f"  failed in    {outcome.failed_stage}: {failed.error or failed.status}")
    return "\n".join(lines)


def record_outcome(recorder: Recorder, outcome: PipelineResult, stopped: bool) -> None:
    """The pipeline's end in its record: each stage's status, and the run's."""
    for result in outcome.stages:
        recorder.record.result[f"{result.stage}.status"] = str(result.status)
    code = 0 if outcome.status == Status.FINISHED else 1
    error = outcome.error or (f"stage {outcome.failed_stage} failed" if outcome.failed_stage else None)
    recorder.end(end_status(code, stopped), None if code == 0 else error)


def run_pipeline_local(spec: JobSpec, app_source: str, repo_root: Path, options: Options,
                       early: WorkerProcess | None = None, source: str = "") -> int:
    """Every stage here, under the job's lock; exit codes as `run_local`'s."""
    run_dir, volumes = folders(spec, repo_root, options)
    # The stages' declared inputs are read from the repository, by the driver here and by each
    # stage's worker.
    pipe = Pipeline(spec, run_dir, volumes, options, early, repo_root=repo_root, source=source)
    started = time.perf_counter()
    with stop_signals(pipe.stop, pipe.request):
        # The driver's own working copy of the volume: it reads the stages' commits after a reload
        # and commits train's result, as Modal's driver function does.
        work = jobfolder.work_copy(volumes, spec.checkpoint.volume, spec.name, pipe.run_id, "driver")
        try:
            with holding(spec, volumes, run_dir, pipe.app_path, app_source, options, pipe.run_id), \
                    recording(volumes / spec.checkpoint.volume / spec.name, *pipe.record) as pipe.recorder:
                try:
                    volume = LocalVolume(volumes / spec.checkpoint.volume, work, spec.name)
                    outcome = driver.Driver(spec, pipe, volume, pipe.run_id, root=work,
                                            inputs_root=repo_root,
                                            stops=FolderRequests(control_dir(volumes))).run(options.rerun)
                except StorageError as exc:  # the driver's own commits: a full disk is the user's
                    raise RunError(str(exc)) from None
                record_outcome(pipe.recorder, outcome,
                               pipe.stopped_by is not None or outcome.status == Status.STOPPED)
        finally:
            LocalVolume.discard(work)
    with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
        click.echo(report(pipe, outcome, time.perf_counter() - started), err=True)
    ended = outcome.to_json()
    driver.notify_outcome(spec, pipe.run_id, {**ended, "status": "stopped"}
                          if pipe.stopped_by is not None else ended)
    if pipe.stopped_by is not None:
        return 128 + pipe.stopped_by
    if outcome.status == Status.FINISHED:
        return 0
    if outcome.status == Status.STOPPED:
        return EXIT_STOPPED
    # A bug in launcher, in any stage: not the user's failure (as a single job's run says it).
    return EXIT_BUG if outcome.has_bug else 1
