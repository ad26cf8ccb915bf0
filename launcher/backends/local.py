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
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import click

from launcher.errors import RunError
from launcher.runtime.events import PREFIX
from launcher.runtime.failures import classify
from launcher.spec.model import JobSpec


@dataclass
class Options:
    processes: int = 1
    preempt_after: float | None = None
    volumes_dir: Path | None = None
    resume: bool = True
    debug: bool = False
    rerun: tuple[str, ...] = ()  # pipeline stages to run even when finished and unchanged


@dataclass
class Attempt:
    number: int
    outcome: str = "transient"
    message: str = ""
    result: dict[str, Any] = field(default_factory=dict)


class Display:
    """Worker output for a person: a progress bar on a TTY, plain lines otherwise."""

    def __init__(self, total: int | None, stream: IO[str]) -> None:
        """`total` steps for a progress bar; None: no bar (a pipeline's other stages)."""
        self.tty = stream.isatty()
        self.bar: Any = None
        if self.tty and total is not None:
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
                 options: Options, stage: str = "train") -> None:
        """`stage`: which of a pipeline's stages its attempts run (each with its own retries)."""
        self.spec, self.app_path, self.run_dir, self.volume_dir = spec, app_path, run_dir, volume_dir
        self.options = options
        self.stage = stage
        found = spec.stage(stage)
        self.retries = spec.retries if found is None else found.retries
        self.attempts: list[Attempt] = []
        self.worker: subprocess.Popen[str] | None = None
        self.interrupted = False
        self.preempted_by_us = False

    def _env(self, attempt: int) -> dict[str, str]:
        threads = str(max(1, (os.cpu_count() or 1) // self.options.processes))
        return {"OMP_NUM_THREADS": threads, **os.environ, **self.spec.env,
                "LAUNCH_EVENTS": "1", "PYTHONUNBUFFERED": "1", "LAUNCH_ATTEMPT": str(attempt),
                "LAUNCH_CHECKPOINT_DIR": str(self.volume_dir), "LAUNCH_RUN_DIR": str(self.run_dir),
                "LAUNCH_PROCESSES": str(self.options.processes),
                "LAUNCH_DEBUG": "1" if self.options.debug else "0"}

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
        argv = [sys.executable, "-m", "launcher.backends.worker", str(self.app_path)]
        argv += [] if self.stage == "train" else [self.stage]
        attempt = Attempt(number)
        worker = subprocess.Popen(argv, env=self._env(number), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, bufsize=1,
                                  start_new_session=True)  # Ctrl-C reaches us; we forward it
        self.worker = worker
        timer = self._preempt_later(worker) if number == 1 else None
        assert worker.stdout is not None
        for raw in worker.stdout:
            self._handle(raw.rstrip("\n"), attempt, display)
        code = worker.wait()
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
        retries = self.retries
        used = 0
        display = Display(self.spec.train.steps if self.stage == "train" else None, sys.stderr)
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


def summary(sup: Supervisor, seconds: float) -> str:
    final = sup.attempts[-1]
    result = next((a.result for a in reversed(sup.attempts) if a.result), {})
    fmt = lambda v: "n/a" if v is None else f"{v:.1f}"  # noqa: E731
    outcomes = ", ".join(f"{a.number}: {a.outcome}" for a in sup.attempts)
    lines = [
        f"summary: {sup.spec.name} {'finished' if final.outcome == 'finished' else 'failed'}",
        f"  steps        {result.get('steps', 'n/a')} of {sup.spec.train.steps}",
        f"  wall time    {seconds:.1f} s",
        # A recipe that reports no episode return (a classifier) gets no return line.
        *([f"  return       last {fmt(result.get('last_return'))}, best {fmt(result.get('best_return'))}"]
          if not result or {result.get("last_return"), result.get("best_return")} != {None} else []),
        f"  checkpoints  {sum(a.result.get('checkpoints_written', 0) for a in sup.attempts)} written "
        f"to {sup.volume_dir}" + (f" ({result['checkpoint_seconds']:.2f} s, "
                                  f"{result['checkpoint_overhead_pct']:.1f}% of training time)"
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


@dataclass(frozen=True)
class Folders:
    app_path: Path  # the rendered app the workers run
    run_dir: Path  # run files: the app, tracker files
    volume_dir: Path  # the checkpoint volume


def set_up(spec: JobSpec, app_source: str, repo_root: Path, options: Options) -> Folders:
    """The run's folders, with the app written into them (--fresh: old checkpoints moved aside)."""
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
    return Folders(app_path, run_dir, volume_dir)


def run_local(spec: JobSpec, app_source: str, repo_root: Path, options: Options) -> int:
    folders = set_up(spec, app_source, repo_root, options)
    sup = Supervisor(spec, folders.app_path, folders.run_dir, folders.volume_dir, options)
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
