"""The pipeline's driver: run the stages in order, skip an unchanged prepare, stop at a failure.

One driver, wherever it runs. On Modal it runs in the app's small CPU function (`pipeline`,
what `launch` spawns); `launch --local` runs the same `Driver` in its own process. Only how a
stage is called differs, behind a `StageCaller`: on Modal (`ModalCaller`) each stage is a call
spawned on its own class and waited for with `modal.FunctionCall.from_id(id).get()`; locally
(launcher.backends.pipeline) the supervisor runs that stage's attempts, one worker each.

The driver decides which stage runs, whether prepare is skipped (a finished result with the
same digest, unless `rerun` names it), and that the pipeline stops at the first stage that
does not finish, naming it. `evaluate` always runs again; train resumes from its newest
checkpoint (and refuses one made on other data).

It owns the run: it takes the job's lease (lease.py) under its own call id before anything
else and holds it to the end, so a second launch of the job is refused in any stage, and each
stage call works under it (the stage is given the driver's call id). Modal restarts a
preempted function on the same input, with the same call id, even without retries: so before
it waits for a stage, the driver records the stage's call id in the job's folder
(`<job>/driver.json`, committed), and a restarted driver waits for the call it finds there
instead of starting a second one; the results it recorded stand.

Standard library only.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Protocol

from launcher.runtime import events, notify
from launcher.runtime.control.stop import Requests, StopWatch
from launcher.runtime.failures import LauncherBug, launchers_bug
from launcher.runtime.lease import Lease, LeaseHeld
from launcher.runtime.pipeline import stages
from launcher.runtime.pipeline.results import PipelineResult, StageName, StageResult, Status
from launcher.runtime.pipeline.stages import StageFolders
from launcher.runtime.runlogs import RunLogs
from launcher.runtime.runs import coordinator
from launcher.runtime.settings import current as current_settings
from launcher.runtime.storage.volume import Volume, guarded
from launcher.spec.model import JobSpec
from launcher.spec.pipeline import driver_timeout_s

RECORD = "driver.json"  # in the job's folder: this driver call's stage calls and their results


class StageCaller(Protocol):
    """How the driver calls a stage: start a call, then wait for its result."""

    def spawn(self, stage: StageName, lease: str) -> str:
        """Start one call of `stage`, working under the driver's lease (`lease`, the driver's
        call id); the call's id."""
        ...

    def get(self, call_id: str) -> dict[str, Any]:
        """The result of the call `call_id` when it ends, as JSON (a `StageResult`'s). A call
        that raised (its retries spent, a timeout) is a failed result, not an exception."""
        ...


class ModalCaller:
    """Stage calls on Modal. `methods`: each stage's Modal method (`Trainer().train`,
    `Prepare().run`, ...); `from_id`: `modal.FunctionCall.from_id`; `run_id`: the run's id, for
    each stage call's LAUNCH_RUN_ID (empty: none)."""

    def __init__(self, methods: Mapping[str, Any], from_id: Callable[[str], Any], run_id: str = "") -> None:
        self.methods, self.from_id, self.run_id = methods, from_id, run_id

    def spawn(self, stage: StageName, lease: str) -> str:
        named = {"run_id": self.run_id} if self.run_id else {}
        return str(self.methods[stage].spawn(lease=lease, **named).object_id)

    def get(self, call_id: str) -> dict[str, Any]:
        try:
            return dict(self.from_id(call_id).get())
        except Exception as exc:  # whatever Modal raises for the stage's last attempt
            return {"status": Status.FAILED, "error": f"{type(exc).__name__}: {exc}"}


class Record:
    """`<job>/driver.json`: the stage calls one driver call made, and the results it got."""

    def __init__(self, path: Path, driver: str) -> None:
        self.path, self.driver = path, driver
        found = _read_json(path)
        self.resumed = found.get("driver") == driver  # this very call, restarted
        calls = found.get("stages") if self.resumed else None
        self.calls: dict[str, dict[str, Any]] = calls if isinstance(calls, dict) else {}

    def call(self, stage: StageName) -> str | None:
        return self.calls.get(stage, {}).get("call")

    def result(self, stage: StageName) -> dict[str, Any] | None:
        return self.calls.get(stage, {}).get("result")

    def started(self, stage: StageName, call_id: str) -> None:
        self.calls[stage] = {"call": call_id, "since": time.time()}

    def finished(self, stage: StageName, result: dict[str, Any]) -> None:
        self.calls[stage]["result"] = result

    def write(self) -> None:
        """A new file renamed into place: never a half-written record."""
        tmp = self.path.with_name(f".tmp-{RECORD}-{os.getpid()}")
        tmp.write_text(json.dumps({"driver": self.driver, "stages": self.calls}, indent=2,
                                  sort_keys=True), "utf-8")
        os.replace(tmp, self.path)


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object at `path`, or {} (missing or damaged: it records nothing)."""
    try:
        found = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _skip(spec: JobSpec, folders: StageFolders, rerun: Collection[str],
          commit: str | None, inputs_root: Path | None) -> dict[str, Any] | None:
    """prepare's earlier result when it finished with the inputs it has now, else None."""
    if "prepare" in rerun:
        events.log("prepare: running it again, as --rerun asks")
        return None
    done = stages.read_result(folders, "prepare")
    want = stages.digest(stages.inputs(spec, "prepare", commit, inputs_root))
    if done is None:
        return None
    if done.get("digest") != want:
        events.log("prepare: its inputs changed since it finished (spec section, seed or code): "
                   "running it again; train will not resume from checkpoints made on the old data")
        return None
    events.log(f"prepare: skipped, finished earlier with the same inputs (digest {want[:12]}); "
               "--rerun prepare runs it again")
    return {"stage": "prepare", "status": Status.SKIPPED, "metrics": done.get("metrics", {}),
            "digest": want, "seconds": 0.0}


def _train_result(spec: JobSpec, folders: StageFolders, volume: Volume, result: dict[str, Any],
                  commit: str | None) -> dict[str, Any]:
    """train's loop result as a stage result, committed beside the others when it finished."""
    metrics = {k: v for k, v in (result.get("metrics") or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    out = {"stage": "train", "status": result.get("status", Status.FAILED), "metrics": metrics,
           "error": result.get("error"), "seconds": result.get("seconds"),
           "steps": result.get("steps"),
           **({"objective": result["objective"]} if result.get("objective") else {})}
    if result.get("bug"):  # a bug in launcher: `launch` exits 3
        out["bug"] = True
    if out["status"] == Status.FINISHED:
        earlier = stages.earlier_train_result(folders, result)
        if earlier is not None:  # nothing trained: keep what describes the checkpoint
            return {**out, "metrics": earlier.get("metrics", {})}
        inputs = stages.inputs(spec, "train", commit)
        out.update(digest=stages.digest(inputs), inputs=inputs)
        stages.write_result(folders, "train", out)
        volume.commit()
    return out


class Driver:
    def __init__(self, spec: JobSpec, caller: StageCaller, volume: Volume, call_id: str, *,
                 commit: str | None = None, root: Path | None = None,
                 inputs_root: Path | None = None, run: Mapping[str, Any] | None = None,
                 stops: Requests | None = None) -> None:
        """`stops`: where `launch stop` leaves requests (runtime/control/stop.py): none of the
        stages after a request starts. `call_id`: this driver call's id (Modal's function call
        id; locally the run's id);
        `root`: the volume's mount as this process sees it (default LAUNCH_CHECKPOINT_DIR, else
        checkpoint.mount); `commit`: the code's git commit, for the stages' digests;
        `inputs_root`: where the stages' declared inputs are (default: see stages.input_root);
        `run`: on Modal, the run this driver coordinates (its id and what `launch` knew): the
        driver keeps its record (launcher.runtime.runs.coordinator). Locally the supervisor does."""
        self.run_info = run
        self.recorder: Any = None
        self.spec, self.caller, self.volume, self.call_id = spec, caller, volume, call_id
        self.commit, self.inputs_root = commit, inputs_root
        self.stops = None if stops is None else StopWatch(stops, lambda: call_id, poll_s=0.0)
        root = root or current_settings().mount(spec.checkpoint.mount)
        self.folders = StageFolders(root, spec.name)
        # Stale after the driver's own timeout: no attempt of it lives longer, and a restarted
        # one takes the lease again at once.
        timeout = driver_timeout_s(spec)
        self.lease = Lease(self.folders.job, volume, job=spec.name,
                           volume_name=spec.checkpoint.volume, every_s=None, timeout_s=timeout,
                           stale_s=timeout)

    def run(self, rerun: Collection[str] = ()) -> PipelineResult:
        """Each stage's result, in order, and the pipeline's status: finished, failed with the
        stage that stopped it, or permanent when another run holds the job."""
        self._reload()  # the latest commits: the lease, the record, prepare's result
        try:
            self.lease.acquire(self.call_id)
        except LeaseHeld as exc:
            events.log(f"error: {exc}")
            return PipelineResult(Status.PERMANENT, error=str(exc))
        self._record_begin()
        outcome = self._stages(Record(self.folders.job / RECORD, self.call_id), rerun)
        self._record_end(outcome)
        # Not on an exception (a preemption): the restart takes the lease again, and a stage
        # call may still be at work under it.
        self._reload()
        self.lease.release()
        return outcome

    def _stages(self, record: Record, rerun: Collection[str]) -> PipelineResult:
        if record.resumed:
            events.log(f"driver call {self.call_id} restarted: the stage calls it made are waited "
                       "for, never made again")
        done: list[StageResult] = []
        for name in self.spec.pipeline:
            result = self._stage(name, record, rerun)
            done.append(result)
            if result.status == Status.STOPPED:
                events.log(f"stage {name} stopped as asked (launch stop); no later stage runs")
                return PipelineResult(Status.STOPPED, tuple(done))
            if not result.status.done:
                events.log(f"stage {name} failed: {result.error or result.status}; "
                           "the pipeline stops here")
                return PipelineResult(Status.FAILED, tuple(done), failed_stage=result.stage)
        return PipelineResult(Status.FINISHED, tuple(done))

    def _stage(self, name: StageName, record: Record, rerun: Collection[str]) -> StageResult:
        earlier = record.result(name)
        if earlier is not None:
            events.log(f"stage {name}: finished before the restart ({earlier.get('status')})")
            return StageResult.from_json(earlier, name)
        call = record.call(name)
        if call is None:
            skipped = _skip(self.spec, self.folders, rerun, self.commit, self.inputs_root) if name == "prepare" else None
            if skipped is not None:
                return StageResult.from_json(skipped)
            if self.stops is not None and self.stops.requested() is not None:
                return StageResult(name, Status.STOPPED, "stopped before it started (launch stop)")
            events.log(f"stage {name}: starting")
            call = self.caller.spawn(name, self.call_id)
            record.started(name, call)
            if self.recorder is not None:
                self.recorder.commit = None  # committed with the driver's record, just below
                coordinator.begin_attempt(self.recorder, name, call)
            self._save(record)  # before waiting: a restart must find this call, not make another
        else:
            events.log(f"stage {name}: waiting for call {call}, made before the restart")
        started = time.monotonic()
        result = self.caller.get(call)
        self._reload()  # the stage's commits
        if name == "train":
            result = _train_result(self.spec, self.folders, self.volume, result, self.commit)
        result = {**result, "stage": name, "wall_seconds": round(time.monotonic() - started, 3)}
        record.finished(name, result)
        if self.recorder is not None:
            self.recorder.result(result)
            number = len(self.recorder.record.attempts_of(name))
            self.recorder.attempt_ended(name, number, str(result.get("status")), str(result.get("error") or ""))
        self._save(record)
        return StageResult.from_json(result)

    def _record_begin(self) -> None:
        if self.run_info:
            coordinator.adopt_run_id(str(self.run_info["id"]))
            self.recorder = coordinator.record_for(self.folders.job, self.run_info, self.spec,
                                                   self.call_id, commit=self._commit, say=events.log)

    def _record_end(self, outcome: PipelineResult) -> None:
        if self.recorder is None:
            return
        self.recorder.commit = self._commit
        ended = outcome.status if outcome.status in (Status.FINISHED, Status.STOPPED) else Status.FAILED
        error = outcome.error or (f"stage {outcome.failed_stage} failed" if outcome.failed_stage else None)
        self.recorder.end(str(ended), None if ended == Status.FINISHED else error)

    def _commit(self) -> None:
        guarded(self.volume.commit, f"checkpoint.volume {self.spec.checkpoint.volume}: commit")

    def _save(self, record: Record) -> None:
        """The record and a heartbeat of the lease, in one commit."""
        self.lease.beat()
        record.write()
        guarded(self.volume.commit, f"checkpoint.volume {self.spec.checkpoint.volume}: commit")

    def _reload(self) -> None:
        guarded(self.volume.reload, f"checkpoint.volume {self.spec.checkpoint.volume}: reload")


def notify_outcome(spec: JobSpec, run: str, outcome: Mapping[str, Any]) -> None:
    """The pipeline's end, to the spec's webhook: its status, train's objective, and (on Modal)
    the estimated cost of every stage's wall time."""
    done = outcome.get("stages") or []
    train = next((r for r in done if r.get("stage") == "train"), {})
    status = outcome.get("status")
    status = status if status in ("finished", "stopped") else "failed"
    where = outcome.get("failed_stage")
    failed = next((r for r in done if r.get("stage") == where), {})
    error = failed.get("error") or outcome.get("error") or ""
    detail = f"in stage {where}" + (f": {error}" if error else "") if where else str(error)
    notify.send(spec, status, run, objective=notify.objective_of(train),
                cost_usd=outcome.get("cost_usd"), detail=detail)


def run_pipeline(spec: Mapping[str, Any] | JobSpec, caller: StageCaller, volume: Volume,
                 call_id: str | None, *, rerun: Collection[str] = (), commit: str | None = None,
                 root: Path | None = None, run: Mapping[str, Any] | None = None,
                 stops: Requests | None = None) -> dict[str, Any]:
    """The pipeline of `spec` (the app's SPEC literal, or a JobSpec), driven by the call
    `call_id` (None: outside a Modal call, e.g. `modal run` in a test, a call of its own); its
    `PipelineResult` as JSON, what Modal returns to `launch`."""
    job = spec if isinstance(spec, JobSpec) else JobSpec.from_dict(dict(spec))
    own = call_id or f"driver-{os.getpid()}-{time.time_ns()}"
    pipeline = Driver(job, caller, volume, own, commit=commit, root=root, run=run, stops=stops)
    try:
        outcome = pipeline.run(rerun).to_json()
    except Exception as exc:
        if not launchers_bug(exc):
            raise  # the volume's or the platform's: Modal restarts the driver, which resumes
        outcome = _bug(exc, pipeline)
    # On Modal the driver is the run's coordinator: it reports, detached or not.
    seconds = {r["stage"]: r["wall_seconds"] for r in outcome["stages"] if "wall_seconds" in r}
    notify_outcome(job, (run or {}).get("id") or own,
                   {**outcome, "cost_usd": notify.estimate(job, seconds)})
    return outcome


def _bug(exc: BaseException, pipeline: Driver) -> dict[str, Any]:
    """A bug in the driver's own code, classified as the worker classifies one: not the user's
    failure, and not retried (a restarted driver would hit it again); its traceback is kept in
    the run's errors.log on the volume, beside its stages' (runtime/runlogs.py)."""
    where = ""
    try:
        logs = RunLogs(Path(tempfile.mkdtemp(prefix="launch-driver-")), pipeline.folders.job,
                       pipeline.spec.checkpoint.volume, kept_locally=False)
        logs.begin(str(pipeline.run_info["id"]) if pipeline.run_info else pipeline.call_id)  # the run's own
        where = f"; the traceback is in {logs.keep(exc)}"
        pipeline.volume.commit()
    except Exception as error:  # never hide the bug itself
        events.log(f"warning: the traceback was not kept: {type(error).__name__}: {error}")
    message = f"{LauncherBug.of(exc)}{where}"
    events.log(f"error: {message}")
    return PipelineResult(Status.PERMANENT, error=message, bug=True).to_json()
