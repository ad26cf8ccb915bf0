"""The local backend: a supervisor that runs each attempt as a fresh worker process.

Like a Modal container, each attempt starts from nothing and goes through the app's own
lifecycle; the checkpoint volume is a local directory that keeps Modal's commit semantics
(each attempt works in its own working copy, thrown away when it ends); the spec's retry
policy is honoured with its real delays; a preemption (SIGINT, as Modal sends it) restarts
without spending a retry. The supervisor holds the job's lock for the whole run (all
attempts), so a second run of the job on the volume refuses to start; the worker dies with
the supervisor, however the supervisor ends. SIGTERM and SIGHUP stop a run as Ctrl-C does: the
worker writes its final checkpoint, the summary prints, and `launch` exits 128 + the signal.

With a memory snapshot (`snapshot: cpu` or `gpu`, per stage), the worker process an attempt
runs in is forked from its stage's snapshot instead, taken once per run after stage 1, as a
container is restored on Modal (launcher.backends.snapshot); the supervisor sees the same
process face: its output, its exit code, its signals.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from launcher.backends import jobfolder
from launcher.backends.snapshot.client import MOUNT, Class, Restored, Snapshots, mode
from launcher.backends.workerproc import Spawn, WorkerProcess, spawn_process
from launcher.errors import EXIT_BUG, EXIT_STOPPED, RunError
from launcher.runtime import notify
from launcher.runtime.control.stop import FolderRequests, StopRequest
from launcher.runtime.events import PREFIX
from launcher.runtime.failures import Outcome, classify
from launcher.runtime.lifecycle import timeline
from launcher.runtime.runs.record import METRICS, RunRecord, new_run_id
from launcher.runtime.runs.recorder import Recorder
from launcher.runtime.settings import RuntimeSettings
from launcher.runtime.storage.volume import LocalVolume

if TYPE_CHECKING:  # annotations only: the supervisor starts its worker sooner without it
    from launcher.spec.model import JobSpec, StageName


@dataclass
class Options:
    processes: int = 1
    preempt_after: float | None = None
    volumes_dir: Path | None = None
    resume: bool = True
    debug: bool = False
    # How a worker process starts: anything that returns a Popen-like object (stdout, poll,
    # wait, send_signal). Tests fork workers from an interpreter that has torch loaded.
    spawn: Spawn = spawn_process
    rerun: tuple[str, ...] = ()  # pipeline stages to run even when finished and unchanged
    code_root: Path | None = None  # where workers import the user's modules from: the repository
    # --shipped: the tree the image gets, laid out; the workers run from it as from /opt/project.
    workdir: Path | None = None
    # The run's snapshot process, for the stages whose snapshot is not none: every attempt
    # and every stage of the run restores it (launcher.backends.snapshot).
    snapshots: Snapshots = field(default_factory=Snapshots)


@dataclass
class Attempt:
    number: int
    outcome: Outcome = "transient"
    message: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    # What its events said as it went, for an attempt killed before its result: the last update
    # it logged, the checkpoints it wrote (the newest), the objective's last record.
    step: int | None = None
    checkpoints: int = 0
    newest_checkpoint: int | None = None
    objective: dict[str, Any] | None = None


class Display:
    """Worker output for a person: a progress bar on a TTY, plain lines otherwise."""

    def __init__(self, total: int | None, stream: IO[str]) -> None:
        """`total` steps for a progress bar; None: no bar (a pipeline's other stages)."""
        self.tty = stream.isatty()
        self.bar: Any = None
        if self.tty and total is not None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="update", dynamic_ncols=True, file=stream)

    def line(self, text: str) -> None:
        # After SIGHUP the terminal may be gone: the run goes on (its final checkpoint first)
        # whether or not its lines can be shown.
        with contextlib.suppress(OSError):
            if self.bar is not None:
                self.bar.write(text, file=sys.stderr)
            else:
                click.echo(text, err=True)

    def metrics(self, event: dict[str, Any]) -> None:
        if self.bar is None:
            return  # the worker's own log line says the same
        self.bar.n = event["step"]
        said = []
        objective = event.get("objective")
        if objective and objective.get("value") is not None:
            said.append(f"{objective['name']} {objective['value']:.4g}")
        sps = event.get("sps")
        if sps is not None:
            said.append(f"{sps:,.0f} SPS")
        with contextlib.suppress(OSError):
            self.bar.set_postfix_str(", ".join(said))

    def close(self) -> None:
        if self.bar is not None:
            with contextlib.suppress(OSError):
                self.bar.close()


class Supervisor:
    def __init__(self, spec: JobSpec, app_path: Path, run_dir: Path, volumes: Path,
                 options: Options, early: WorkerProcess | None = None, stage: StageName = "train",
                 run_id: str | None = None, lease: str = "", inputs_root: Path | None = None) -> None:
        """`stage`: which of a pipeline's stages its attempts run (each with its own retries);
        `run_id`: the run's id (a pipeline's stages share one), a new one when None; `lease`:
        the pipeline driver's call id, whose lease of the job the attempts work under."""
        self.spec, self.app_path, self.run_dir, self.volumes = spec, app_path, run_dir, volumes
        self.volume_dir = volumes / spec.checkpoint.volume
        self.options = options
        self.run_id = run_id or new_run_id()
        self.stage = stage
        self.lease = lease
        self.inputs_root = inputs_root  # where a pipeline stage's declared inputs are
        found = spec.stage(stage)
        self.retries = spec.retries if found is None else found.retries
        self.attempts: list[Attempt] = []
        self.worker: Any = None
        self.stopped_by: int | None = None  # the signal that asked us to stop
        self.requested: StopRequest | None = None  # `launch stop` asked (see `request`)
        self.wake = threading.Event()
        # The run's record and its log of this stage (launcher.runtime.runs), once it holds the job.
        self.recorder: Recorder | None = None
        self.log: IO[str] | None = None
        self.preempted_by_us = False
        # The first attempt's worker, started while the spec was validated: usable only if
        # it was started with the environment the validated spec gives.
        self.early = early if early is not None and early.spec_env == spec.env else None
        if early is not None and self.early is None:
            early.kill()

    @property
    def interrupted(self) -> bool:
        return self.stopped_by is not None or self.requested is not None

    @property
    def snapshot(self) -> str:
        return mode(self.spec, self.stage)

    def start_worker(self, attempt: int, work: Path) -> WorkerProcess | Restored:
        """The attempt's worker process, started (early, for the first attempt) and told to go:
        which app, and this attempt's working copy of the volume. With a snapshot, the attempt
        is restored from its class's snapshot instead (stage 1 ran there, once)."""
        timeline.mark("due")
        worker, self.early = self.early, None
        fresh = lambda: start_worker(self.spec.env, self.options, attempt)  # noqa: E731
        if self.snapshot != "none":
            later = self.spec.pipeline[self.spec.pipeline.index(self.stage) + 1:]
            ahead = [self._class(s) for s in later if mode(self.spec, s) != "none"]
            return self.options.snapshots.start(worker, fresh, self.app_path, attempt,
                                                self._class(self.stage), ahead)
        worker = worker or fresh()
        worker.go(self.app_path, self._settings(work), self.stage)
        return worker

    def _settings(self, work: Path) -> dict[str, str]:
        return RuntimeSettings(volume=self.volume_dir, checkpoint_dir=work, run_dir=self.run_dir,
                               run_id=self.run_id, lease=self.lease, code_root=self.options.code_root,
                               repo_root=self.inputs_root, workdir=self.options.workdir,
                               control_dir=control_dir(self.volumes)).to_env()

    def _work(self, stage: StageName, number: int) -> Path:
        """Where an attempt of `stage` works: its own working copy, or (restored from a
        snapshot) its class's mount path, the same for each of its attempts."""
        name = MOUNT if mode(self.spec, stage) != "none" else f"a{number}"
        return jobfolder.work_copy(self.volumes, self.spec.checkpoint.volume, self.spec.name,
                                   self.run_id, f"{'' if stage == 'train' else stage + '-'}{name}")

    def _class(self, stage: StageName) -> Class:
        return Class(stage, mode(self.spec, stage), self._settings(self._work(stage, 1)))

    def _preempt_later(self, worker: Any) -> threading.Timer | None:
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
        """One worker, in a working copy of the volume that is thrown away when it ends: what
        it did not commit is lost, as on Modal."""
        attempt = Attempt(number)
        work = self._work(self.stage, number)
        if self.recorder is not None:
            self.recorder.attempt_started(self.stage, number)
        try:
            code = self._run_worker(self.start_worker(number, work), number, attempt, display)
        finally:
            LocalVolume.discard(work)
        attempt.outcome = classify(code)
        if attempt.result.get("status") == "stopped" or (self.requested is not None
                                                         and attempt.outcome != "finished"):
            attempt.outcome = "stopped"  # `launch stop`: its loop ended it, or --now killed it
            attempt.message = attempt.message or "stopped at once (launch stop --now)"
        if self.preempted_by_us and attempt.outcome == "transient":
            # As on Modal, a preemption during start-up (before the loop can checkpoint) still
            # restarts without spending a retry; the restart resumes from the last commit.
            attempt.outcome = "preempted"
        self.preempted_by_us = False
        if attempt.outcome == "transient" and not attempt.message:
            attempt.message = f"worker exited with code {code}"
        if self.recorder is not None:
            self.recorder.history(self.recorder.path.parent / METRICS)
            self.recorder.attempt_ended(self.stage, number, "stopped" if self.interrupted and
                                        attempt.outcome != "finished" else attempt.outcome, attempt.message)
        return attempt

    def _run_worker(self, process: WorkerProcess | Restored, number: int, attempt: Attempt,
                    display: Display) -> int:
        worker = self.worker = process.proc
        if self.stopped_by is not None:  # a stop that came while it was starting (a graceful
            worker.send_signal(signal.SIGINT)  # `launch stop` is seen by its loop instead)
        timer = self._preempt_later(worker) if number == 1 else None
        try:
            for raw in worker.stdout:
                self.handle(raw.rstrip("\n"), attempt, display)
            code = worker.wait()
            timeline.mark("worker_exited")
            return code
        finally:
            if timer is not None:
                timer.cancel()

    def handle(self, line: str, attempt: Attempt, display: Display) -> None:
        """One line of a worker's output: an event or a log line. The sweep's trial supervisor
        extends it to see each report."""
        if not line.startswith(PREFIX):
            display.line(line)
            self.keep(line)
            return
        event = json.loads(line[len(PREFIX):])
        kind = event.pop("event")
        if kind == "metrics":
            attempt.step = event["step"]
            attempt.objective = event.get("objective") or attempt.objective
            display.metrics(event)
        elif kind == "checkpoint":
            attempt.checkpoints += 1
            attempt.newest_checkpoint = event["step"]
        elif kind == "result":
            attempt.result = event
        elif kind == "failure":
            attempt.message = event["message"]
        if self.recorder is not None:
            self._record(kind, event)

    def _record(self, kind: str, event: dict[str, Any]) -> None:
        assert self.recorder is not None
        if kind == "metrics" and self.stage == "train":
            self.recorder.metrics(int(event.get("step", 0)), event)
        elif kind == "checkpoint":
            self.recorder.checkpoint(int(event["step"]))
        elif kind == "result":
            self.recorder.result(event)
        elif kind == "objective":
            self.recorder.set_objective(event["name"], event["mode"])

    def keep(self, line: str) -> None:
        """The stage's log, beside the run's record: what `launch logs RUN` shows."""
        if self.log is not None:
            with contextlib.suppress(OSError):
                self.log.write(line + "\n")
                self.log.flush()

    def stop(self, signum: int) -> None:
        """Ctrl-C, SIGTERM or SIGHUP: a preemption. The worker checkpoints (SIGINT, as Modal
        sends it), then the run stops without another attempt. Asked twice, the worker stops
        at once, without a checkpoint."""
        if self.stopped_by is None:
            self.stopped_by = signum
        self.wake.set()
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGINT)

    def interrupt(self) -> None:
        self.stop(signal.SIGINT)

    def request(self) -> None:
        """SIGUSR1 from `launch stop`: read its request. Graceful, the worker's loop sees it too
        and ends after its next update with a final checkpoint; here no further attempt starts.
        `--now`: the worker's process group is killed at once."""
        found = StopRequest.of(FolderRequests(control_dir(self.volumes)).get(self.run_id))
        if found is None:
            return
        self.requested = found
        self.wake.set()
        if found.now and self.worker is not None and self.worker.poll() is None:
            kill_group(self.worker)

    def run(self, app_source: str, record: tuple[RunRecord, str | None] | None = None) -> int:
        """All attempts, under the job's lock; 0 when the last one finished. A job held by
        another run is a RunError, before anything is written. `record`: the run's record and
        code diff, kept in the job's folder from the moment the job is held."""
        with holding(self.spec, self.volumes, self.run_dir, self.app_path, app_source,
                     self.options, self.run_id):
            if record is None:
                return self.run_attempts()
            with recording(self.volume_dir / self.spec.name, *record) as recorder:
                self.recorder = recorder
                with stage_log(recorder, self.stage) as self.log:
                    code = self.run_attempts()
                recorder.end(self.final_status(code), self._error())
                return code

    def final_status(self, code: int) -> str:
        """The status the run's record ends with."""
        return end_status(code, self.interrupted or self.requested is not None)

    def _error(self) -> str | None:
        final = self.attempts[-1] if self.attempts else None
        return None if final is None or final.outcome in ("finished", "stopped") else final.message or None

    def run_attempts(self) -> int:
        """Every attempt of this stage, with its retries; the caller holds the job."""
        retries = self.retries
        used = 0
        display = Display(self.spec.train.steps if self.stage == "train" else None, sys.stderr)
        try:
            while True:
                attempt = self.attempt(len(self.attempts) + 1, display)
                self.attempts.append(attempt)
                said = (f"[launch] attempt {attempt.number}: {attempt.outcome}"
                        + (f" ({attempt.message})" if attempt.message else ""))
                display.line(said)
                self.keep(said)
                if attempt.outcome in ("finished", "stopped") or self.interrupted:
                    break
                if attempt.outcome == "preempted":
                    continue  # as on Modal: a preemption restarts the input and spends no retry
                if attempt.outcome in ("permanent", "bug") or used >= retries.max_retries:
                    break
                used += 1
                notify.send(self.spec, "retried", self.run_id,
                            detail=f"{self.stage} attempt {attempt.number} {attempt.outcome}"
                                   + (f": {attempt.message}" if attempt.message else ""))
                delay = retries.delay(used)
                display.line(f"[launch] retry {used} of {retries.max_retries} in {delay:g} s")
                if self.wake.wait(delay):  # stopped during the delay: no further attempt
                    break
        finally:
            display.close()
        outcome = self.attempts[-1].outcome
        if outcome == "stopped":
            return EXIT_STOPPED
        return 0 if outcome == "finished" else EXIT_BUG if outcome == "bug" else 1


def kill_group(worker: Any) -> None:
    """SIGKILL to the worker and everything it started: its own process group (workers start
    a session of their own), else the worker alone."""
    pid = getattr(worker, "pid", None)
    try:
        if pid is not None and os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
            return
    except ProcessLookupError:
        return
    worker.send_signal(signal.SIGKILL)


def control_dir(volumes: Path) -> Path:
    """Where `launch stop` leaves requests for the runs on these volumes ('@': never a volume)."""
    return volumes / "@control"


def start_worker(spec_env: Mapping[str, str], options: Options, attempt: int = 1) -> WorkerProcess:
    return WorkerProcess(spec_env, options.processes, attempt, options.debug, options.spawn)


def _updates(sup: Supervisor) -> str:
    """How far the run got across its attempts, and its newest checkpoint."""
    reached = [s for a in sup.attempts for s in (a.result.get("steps"), a.step, a.newest_checkpoint)
               if s is not None]
    saved = [a.newest_checkpoint for a in sup.attempts if a.newest_checkpoint is not None]
    if not reached:
        return f"n/a of {sup.spec.train.steps}"
    newest = f" (newest checkpoint written: step {saved[-1]})" if saved and saved[-1] != max(reached) else ""
    return f"{max(reached)} of {sup.spec.train.steps}{newest}"


def _objective(sup: Supervisor, result: dict[str, Any]) -> str:
    """The objective's last and best values across the run (the newest attempt that said them:
    each carries the best on from the checkpoint it resumed), or that the recipe declares none."""
    said = [a.result.get("objective") or a.objective for a in sup.attempts]
    record = next((r for r in reversed(said) if r), None)
    if not record:
        trained = result or any(a.step is not None for a in sup.attempts)
        return "none declared (the recipe's objective attribute names one)" if trained else "n/a"
    fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
    return (f"{record['name']} ({record['mode']}): last {fmt(record.get('value'))}, "
            f"best {fmt(record.get('best'))}")


def summary(sup: Supervisor, seconds: float) -> str:
    final = sup.attempts[-1]
    result = next((a.result for a in reversed(sup.attempts) if a.result), {})
    outcomes = ", ".join(f"{a.number}: {a.outcome}" for a in sup.attempts)
    if final.outcome == "finished":
        state = "finished"
    elif final.outcome == "stopped":
        state = "stopped (launch stop)"
    elif sup.stopped_by is not None:
        state = f"stopped ({signal.Signals(sup.stopped_by).name})"
    else:
        state = "failed"
    lines = [
        f"summary: {sup.spec.name} {state}",
        f"  updates      {_updates(sup)}",
        f"  wall time    {seconds:.1f} s",
        f"  objective    {_objective(sup, result)}",
        f"  checkpoints  {sum(a.checkpoints for a in sup.attempts)} written "
        f"to {sup.volume_dir / sup.spec.name}" + (f" ({result['checkpoint_seconds']:.2f} s, "
                                  f"{result['checkpoint_overhead_pct']:.1f}% of training time"
                                  f"{', written in the background' if result.get('checkpoints_in_background') else ''})"
                                  if "checkpoint_seconds" in result else ""),
        f"  attempts     {len(sup.attempts)} ({outcomes})",
    ]
    if final.outcome not in ("finished", "stopped"):
        lines.append(f"  error        {final.message or 'interrupted'}")
    return "\n".join(lines)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def end_status(code: int, stopped: bool) -> str:
    return "stopped" if stopped else "finished" if code == 0 else "failed"


@contextlib.contextmanager
def recording(job_dir: Path, record: RunRecord, diff: str | None) -> Iterator[Recorder]:
    """The run's record, written in the job's committed folder (the supervisor is its only
    writer), with the code's diff beside it; a run that ends by an exception ends `failed`."""
    recorder = Recorder(job_dir, record, say=lambda text: click.echo(f"[launch] {text}", err=True))
    recorder.save()
    if diff:
        with contextlib.suppress(OSError):
            (recorder.path.parent / record.code["diff"]).write_text(diff, "utf-8")
    try:
        yield recorder
    except BaseException as exc:
        if recorder.record.ended is None:
            recorder.end("failed", f"{type(exc).__name__}: {exc}")
        raise


@contextlib.contextmanager
def stage_log(recorder: Recorder, stage: str) -> Iterator[IO[str] | None]:
    """The stage's log, in the record's `logs` folder: on local disk, off the volume (a file
    appended to in place has no place on it: its working copies share the file)."""
    try:
        assert recorder.record.logs is not None
        Path(recorder.record.logs).mkdir(parents=True, exist_ok=True)
        log: IO[str] | None = open(Path(recorder.record.logs) / f"{stage}.log", "a", encoding="utf-8")
    except OSError:
        log = None
    try:
        yield log
    finally:
        if log is not None:
            log.close()


@contextlib.contextmanager
def holding(spec: JobSpec, volumes: Path, run_dir: Path, app_path: Path, app_source: str,
            options: Options, run_id: str) -> Iterator[None]:
    """The job's lock for the whole run (every attempt, every stage of a pipeline), and, under
    it: clean after dead runs, --fresh, the app file the workers import."""
    where = (volumes, spec.checkpoint.volume, spec.name)
    lock = jobfolder.JobLock(*where, run_id)
    try:
        lock.acquire()
    except OSError as exc:  # a read-only or full volumes folder: the user's to fix
        raise RunError(_cannot_prepare(exc)) from None
    try:
        try:
            jobfolder.check_folders(*where)
            for said in jobfolder.clean_after_dead_runs(*where, run_id):
                click.echo(f"[launch] {said}", err=True)
            if not options.resume and (moved := jobfolder.archive(*where)) is not None:
                click.echo(f"[launch] --fresh: earlier checkpoints moved to {moved}", err=True)
            if notice := jobfolder.top_level_notice(*where):
                click.echo(f"[launch] {notice}", err=True)
            (volumes / spec.checkpoint.volume).mkdir(parents=True, exist_ok=True)
            run_dir.mkdir(parents=True, exist_ok=True)
            app_path.write_text(app_source, "utf-8")
        except OSError as exc:
            raise RunError(_cannot_prepare(exc)) from None
        yield
    finally:
        jobfolder.release_lease(*where, run_id)
        FolderRequests(control_dir(volumes)).pop(run_id)  # asked of this run: never of the next
        lock.release()


def _cannot_prepare(exc: OSError) -> str:
    return f"{exc.filename}: cannot prepare the local run: {exc.strerror}"


def local_state(repo_root: Path) -> Path:
    """Where local runs keep their files (runs, volumes, shipped trees): LAUNCH_LOCAL_DIR, else the
    repository's .launch/. The test suite sets it, so no test writes into the checkout."""
    return Path(os.environ.get("LAUNCH_LOCAL_DIR") or repo_root / ".launch")


def folders(spec: JobSpec, repo_root: Path, options: Options) -> tuple[Path, Path]:
    """The run's folder (the app, tracker files) and the folder that holds the volumes."""
    return (local_state(repo_root) / "runs" / spec.name,
            options.volumes_dir or local_state(repo_root) / "volumes")


@contextlib.contextmanager
def stop_signals(handler: Callable[[int], None], request: Callable[[], None] | None = None) -> Iterator[None]:
    """While inside: Ctrl-C, SIGTERM and SIGHUP all go to `handler`, SIGUSR1 (`launch stop`) to
    `request` (left as it was when None: a sweep's coordinator takes none); the previous handlers are restored on the way out."""
    previous = {sig: signal.signal(sig, lambda signum, _: handler(signum)) for sig in _STOP_SIGNALS}
    if request is not None:
        previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, lambda _signum, _frame: request())
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_local(spec: JobSpec, app_source: str, repo_root: Path, options: Options,
              early: WorkerProcess | None = None, source: str = "") -> int:
    """Run every attempt here; the exit code: 0 finished, 1 failed, 128 + N stopped by signal N
    (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP), as a shell reports it. `early` is a first worker
    started before the spec was validated (see launcher.backends.workerproc)."""
    from launcher.backends.runinfo import local_record

    run_dir, volumes = folders(spec, repo_root, options)
    record = local_record(spec, source, repo_root, run_dir)
    sup = Supervisor(spec, run_dir / "app.py", run_dir, volumes, options, early, run_id=record[0].run)
    started = time.perf_counter()
    with stop_signals(sup.stop, sup.request):
        code = sup.run(app_source, record)
    with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
        click.echo(summary(sup, time.perf_counter() - started), err=True)
    final = sup.attempts[-1] if sup.attempts else None
    result = next((a.result for a in reversed(sup.attempts) if a.result), {})
    status = "finished" if code == 0 else "stopped" if sup.interrupted or (
        final is not None and final.outcome == "stopped") else "failed"
    notify.send(spec, status, sup.run_id, objective=notify.objective_of(result),
                detail="" if final is None or status != "failed" else final.message)
    return 128 + sup.stopped_by if sup.stopped_by is not None else code
