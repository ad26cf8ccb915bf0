"""The local backend: a supervisor that runs each attempt as a fresh worker process.

Like a Modal container, each attempt starts from nothing and goes through the app's own
lifecycle; the checkpoint volume is a local directory; the spec's retry policy is honoured
with its real delays; a preemption (SIGINT, as Modal sends it) restarts without spending a
retry.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from launcher.backends.workerproc import WorkerProcess
from launcher.errors import RunError
from launcher.runtime import timeline
from launcher.runtime.events import PREFIX
from launcher.runtime.failures import classify

if TYPE_CHECKING:  # annotations only: the supervisor starts its worker sooner without it
    from launcher.spec.model import JobSpec


@dataclass
class Options:
    processes: int = 1
    preempt_after: float | None = None
    volumes_dir: Path | None = None
    resume: bool = True
    debug: bool = False


@dataclass
class Attempt:
    number: int
    outcome: str = "transient"
    message: str = ""
    result: dict[str, Any] = field(default_factory=dict)


class Display:
    """Worker output for a person: a progress bar on a TTY, plain lines otherwise."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self.tty = stream.isatty()
        self.bar: Any = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, file=stream)

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            click.echo(text, err=True)

    def metrics(self, event: dict[str, Any]) -> None:
        if self.bar is None:
            return  # the worker's own log line says the same
        self.bar.n = event["step"]
        ret = event.get("return_mean100")
        self.bar.set_postfix_str(f"{event['sps']:,.0f} SPS" + (f", return {ret:.1f}" if ret is not None else ""))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Supervisor:
    def __init__(self, spec: JobSpec, app_path: Path, run_dir: Path, volume_dir: Path,
                 options: Options, early: WorkerProcess | None = None) -> None:
        self.spec, self.app_path, self.run_dir, self.volume_dir = spec, app_path, run_dir, volume_dir
        self.options = options
        self.attempts: list[Attempt] = []
        self.worker: subprocess.Popen[str] | None = None
        self.interrupted = False
        self.preempted_by_us = False
        # The first attempt's worker, started while the spec was validated: usable only if
        # it was started with the environment the validated spec gives.
        self.early = early if early is not None and early.spec_env == spec.env else None
        if early is not None and self.early is None:
            early.kill()

    def start_worker(self, attempt: int) -> WorkerProcess:
        """The attempt's worker process, started (early, for the first attempt) and told to go."""
        worker, self.early = self.early, None
        if worker is None:
            worker = start_worker(self.spec.env, self.options, attempt)
        worker.go(self.app_path, {"LAUNCH_CHECKPOINT_DIR": str(self.volume_dir),
                                  "LAUNCH_RUN_DIR": str(self.run_dir)})
        return worker

    def _preempt_later(self, worker: subprocess.Popen[str]) -> threading.Timer | None:
        if self.options.preempt_after is None:
            return None
        def preempt() -> None:
            if worker.poll() is None:
                self.preempted_by_us = True
                worker.send_signal(signal.SIGINT)  # to the container's main process, as Modal does
        timer = threading.Timer(self.options.preempt_after, preempt)
        timer.daemon = True
        timer.start()
        return timer

    def attempt(self, number: int, display: Display) -> Attempt:
        attempt = Attempt(number)
        worker = self.worker = self.start_worker(number).proc
        timer = self._preempt_later(worker) if number == 1 else None
        assert worker.stdout is not None
        for raw in worker.stdout:
            self._handle(raw.rstrip("\n"), attempt, display)
        code = worker.wait()
        timeline.mark("worker_exited")
        if timer is not None:
            timer.cancel()
        attempt.outcome = classify(code)
        if self.preempted_by_us and attempt.outcome == "transient":
            # As on Modal, a preemption during start-up (before the loop can checkpoint) still
            # restarts without spending a retry; the restart resumes from the last commit.
            attempt.outcome = "preempted"
        self.preempted_by_us = False
        if attempt.outcome == "transient" and not attempt.message:
            attempt.message = f"worker exited with code {code}"
        return attempt

    def _handle(self, line: str, attempt: Attempt, display: Display) -> None:
        if not line.startswith(PREFIX):
            display.line(line)
            return
        event = json.loads(line[len(PREFIX):])
        kind = event.pop("event")
        if kind == "metrics":
            display.metrics(event)
        elif kind == "result":
            attempt.result = event
        elif kind == "failure":
            attempt.message = event["message"]

    def interrupt(self) -> None:
        """Ctrl-C: let the worker checkpoint (SIGINT), then stop without retrying."""
        self.interrupted = True
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGINT)

    def run(self) -> int:
        retries = self.spec.retries
        used = 0
        display = Display(self.spec.train.steps, sys.stderr)
        try:
            while True:
                attempt = self.attempt(len(self.attempts) + 1, display)
                self.attempts.append(attempt)
                display.line(f"[launch] attempt {attempt.number}: {attempt.outcome}"
                             + (f" ({attempt.message})" if attempt.message else ""))
                if attempt.outcome == "finished" or self.interrupted:
                    break
                if attempt.outcome == "preempted":
                    continue  # as on Modal: a preemption restarts the input and spends no retry
                if attempt.outcome == "permanent" or used >= retries.max_retries:
                    break
                used += 1
                delay = retries.delay(used)
                display.line(f"[launch] retry {used} of {retries.max_retries} in {delay:g} s")
                time.sleep(delay)
                if self.interrupted:  # Ctrl-C during the delay: no further attempt
                    break
        finally:
            display.close()
        return 0 if self.attempts[-1].outcome == "finished" else 1


def start_worker(spec_env: Mapping[str, str], options: Options, attempt: int = 1) -> WorkerProcess:
    return WorkerProcess(spec_env, options.processes, attempt, options.debug)


def summary(sup: Supervisor, seconds: float) -> str:
    final = sup.attempts[-1]
    result = next((a.result for a in reversed(sup.attempts) if a.result), {})
    fmt = lambda v: "n/a" if v is None else f"{v:.1f}"  # noqa: E731
    outcomes = ", ".join(f"{a.number}: {a.outcome}" for a in sup.attempts)
    lines = [
        f"summary: {sup.spec.name} {'finished' if final.outcome == 'finished' else 'failed'}",
        f"  steps        {result.get('steps', 'n/a')} of {sup.spec.train.steps}",
        f"  wall time    {seconds:.1f} s",
        f"  return       last {fmt(result.get('last_return'))}, best {fmt(result.get('best_return'))}",
        f"  checkpoints  {sum(a.result.get('checkpoints_written', 0) for a in sup.attempts)} written "
        f"to {sup.volume_dir}" + (f" ({result['checkpoint_seconds']:.2f} s, "
                                  f"{result['checkpoint_overhead_pct']:.1f}% of training time"
                                  f"{', written in the background' if result.get('checkpoints_in_background') else ''})"
                                  if "checkpoint_seconds" in result else ""),
        f"  attempts     {len(sup.attempts)} ({outcomes})",
    ]
    if final.outcome != "finished":
        lines.append(f"  error        {final.message or 'interrupted'}")
    return "\n".join(lines)


def archive(volume_dir: Path) -> Path | None:
    """--fresh: move the volume's contents aside (never delete them) and start empty."""
    if not volume_dir.is_dir() or not any(volume_dir.iterdir()):
        return None
    target = volume_dir.with_name(f"{volume_dir.name}.{time.strftime('%Y%m%d-%H%M%S')}")
    volume_dir.rename(target)
    return target


def run_local(spec: JobSpec, app_source: str, repo_root: Path, options: Options,
              early: WorkerProcess | None = None) -> int:
    """Run the app's attempts here; `early` is a first worker started before the spec was
    validated (see launcher.backends.workerproc)."""
    run_dir = repo_root / ".launch" / "runs" / spec.name
    volume_dir = (options.volumes_dir or repo_root / ".launch" / "volumes") / spec.checkpoint.volume
    try:
        if not options.resume and (moved := archive(volume_dir)) is not None:
            click.echo(f"[launch] --fresh: earlier checkpoints moved to {moved}", err=True)
        volume_dir.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        app_path = run_dir / "app.py"
        app_path.write_text(app_source, "utf-8")
    except OSError as exc:
        raise RunError(f"{exc.filename}: cannot prepare the local run: {exc.strerror}") from None
    sup = Supervisor(spec, app_path, run_dir, volume_dir, options, early)
    started = time.perf_counter()
    previous = signal.signal(signal.SIGINT, lambda *_: sup.interrupt())
    try:
        code = sup.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    click.echo(summary(sup, time.perf_counter() - started), err=True)
    if sup.interrupted:
        return 130
    return code
