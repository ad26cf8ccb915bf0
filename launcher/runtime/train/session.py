"""The runtime inside the container: the plain object behind the generated app's Modal class.

    stage1()   @modal.enter(snap=True)   heavy imports; the recipe is built on CPU
    stage2()   @modal.enter(snap=False)  volume reload; Accelerator; newest checkpoint loaded
    train()    @modal.method()           the job's lease; the loop: updates, logs, checkpoints
    shutdown() @modal.exit()             a final checkpoint + commit if anything is unsaved

Each Modal hook calls the session hook of the same name and nothing else; locally,
`launcher.runtime.lifecycle.container` calls the same hooks in the same order. The session owns the
container's state across calls: the spec, the volume, the job's folder on it
(`<mount>/<job name>`: checkpoints, the lease, mirrored tracker files), the recipe (built in
stage 1, rebuilt after a failed update or a failed load) and its loop, stage timings, and the
choice between one process and many. It hands a loop a `LoopContext`; the loop owns the
updates and talks to its checkpoint manager, and neither looks back at the session.

What it shares with a pipeline stage's session (`pipeline/stage_session.py`) is their base,
`ContainerSession`: the spec and the volume (reloaded through `guarded`), the run folder, the
job's lease for a call, an enter hook's permanent failure kept for the call, a failure given up
as the call's result, and the one rebuild sequence (`_prepared`, `_rebuilt`). Whether a warm
container's loop may run again is the loop's own state's answer (`LoopState.reusable`).

Stage 2 only reads the volume: the job's lease is taken at the start of `train`, where the
call id is known (Modal sets it for an input, not for enter hooks), and only then are
leftovers of killed attempts cleaned and anything written. A pipeline's train is given its
driver's call id (`lease`) and works under the driver's lease instead of taking its own.

With more than one process (gpu_count > 1, nodes > 1, or --processes locally), stage 1 runs
once in the container's main process and `train` forks one worker per GPU through
Accelerate's `notebook_launcher`; each worker inherits the CPU-built recipe, so stage 1 is
not repeated, and does its own stage 2 (device placement needs its own process).

Failures: an exception before an attempt's first update completes is permanent
(recipe/checks.py), so is a broken protocol, and so is a bug in launcher (`LauncherBug`) at any
time; `train` returns a permanent failure instead of raising, since Modal retries every
exception. Every failure is told in one line that names the innermost frame of the user's code
it went through (recipe/checks.py), and its full traceback is kept in the run's `errors.log`
(runlogs.py: the run's folder, on local disk and on the volume), which the line names.

Imports neither click, Jinja nor jsonschema.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import traceback
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

from launcher.runtime import events, faults, notify
from launcher.runtime.checkpoint import resume_policy, store
from launcher.runtime.checkpoint.manager import LoadFailed
from launcher.runtime.control import stop
from launcher.runtime.control.stop import Requests
from launcher.runtime.failures import (LauncherBug, PermanentError, Preempted, VolumeError, describe, failed,
                                       headline, launchers_bug, rebuilt)
from launcher.runtime.lease import Lease
from launcher.runtime.lease import read as read_lease
from launcher.runtime.lifecycle import lifeline, process
from launcher.runtime.pipeline import stages
from launcher.runtime.pipeline.stages import StageFolders
from launcher.runtime.recipe import checks
from launcher.runtime.runlogs import RunLogs
from launcher.runtime.recipe.objective import check as check_objective
from launcher.runtime.runs.record import METRICS
from launcher.runtime.settings import RuntimeSettings
from launcher.runtime.settings import current as current_settings
from launcher.runtime.storage.volume import Volume, guarded
from launcher.runtime.train import results
from launcher.runtime.train.context import LoopContext
from launcher.runtime.train.loop import Loop
from launcher.spec.model import JobSpec
from launcher.spec.refs import RefError, import_ref


def run_logs(spec: JobSpec, job_dir: Path, settings: RuntimeSettings) -> tuple[Path, RunLogs]:
    """Where runs of the job keep their logs on local disk (the settings' run folder, kept: a
    local run; else a temporary folder), and this run's logs there and in `job_dir` on the volume."""
    root = settings.runs(spec.name)
    return root, RunLogs(root, job_dir, spec.checkpoint.volume, kept_locally=settings.run_dir is not None)


def run_id(settings: RuntimeSettings, lease: str, call_id: str) -> str:
    """The run's id, the same for every attempt and stage: the coordinator's where it set one
    (locally), else the pipeline driver's call id (`lease`), else this call's id."""
    return settings.run_id or lease or call_id


def import_recipe(ref: str) -> type:
    """The recipe class named `module:Class`; a failure is permanent (a retry cannot fix it)."""
    try:
        recipe = import_ref(ref)
    except RefError as exc:
        raise PermanentError(f"train.recipe: {exc}") from exc
    if not isinstance(recipe, type):
        raise PermanentError(f"train.recipe: {ref!r} is not a class")
    return recipe


def build_recipe(spec: JobSpec, recipe_cls: type) -> Any:
    """The recipe as a fresh run builds it: seeded first, so a rebuild starts from the very
    weights a fresh start would (a checkpoint loaded next brings its own RNG states)."""
    from accelerate.utils import set_seed

    set_seed(spec.train.seed)
    try:
        return recipe_cls(dict(spec.train.config), spec.train.seed)
    except (TypeError, ValueError, KeyError) as exc:
        where = checks.user_frame(exc.__traceback__, recipe_cls)
        raise PermanentError(f"{where + ': ' if where else ''}train.config: "
                             f"{spec.train.recipe} rejected it: {exc}") from exc


def failed_result(exc: BaseException, logs: RunLogs) -> dict[str, Any] | None:
    """`exc` as a permanent failure's result, with its traceback (kept in the run's error log,
    which its message names); None: it is transient (or a preemption), to be raised and retried,
    its traceback kept and its one line logged here."""
    if isinstance(exc, Preempted):
        return None
    log = _keep_traceback(exc, logs)
    where = f"; the traceback is in {log}" if log else ""
    text = "".join(traceback.format_exception(exc))
    if launchers_bug(exc):
        return {"status": "permanent", "error": f"{LauncherBug.of(exc)}{where}", "bug": True,
                "traceback": text}
    if isinstance(exc, PermanentError):
        return {"status": "permanent", "error": str(exc), "traceback": text}
    events.log(f"error: {headline(exc)}{where}")
    return None


def _keep_traceback(exc: BaseException, logs: RunLogs) -> str | None:
    """Keep `exc`'s traceback in the run's error log; where to read it. A log that cannot be
    written never hides the failure itself."""
    try:
        return logs.keep(exc)
    except OSError as error:
        events.log(f"warning: the traceback was not kept: {error}")
        return None


class _Unmounted:
    """No volume was given: only stage 1 can run."""

    def commit(self) -> None:
        raise RuntimeError("this session has no volume")

    reload = commit


class ContainerSession:
    """What a train session (`Session`) and a stage session (`StageSession`) share: the spec,
    the volume and the job's folder on it, the run folder, the job's lease taken for a call
    (or joined, under a pipeline driver's), a permanent failure of an enter hook kept for the
    call, and a loop: made by the subclass (`_new_loop`), placed and resumed by `_prepared`,
    and, after a load that failed part-way, rebuilt by `_rebuilt` (the one rebuild sequence)."""

    lease: Lease  # made by the subclass: its timeout and heartbeat are its own

    def __init__(self, spec: dict[str, Any], volume: Volume,
                 call_id: Callable[[], str | None] | None = None,
                 settings: RuntimeSettings | None = None) -> None:
        self.spec = JobSpec.from_dict(spec)
        self.settings = settings if settings is not None else current_settings()
        self.root = self.settings.mount(self.spec.checkpoint.mount)
        self.job_dir = self.root / self.spec.name
        self.volume = volume
        self.call_id = call_id or (lambda: None)
        self.own_id = ""  # made on first use: containers restored from one snapshot differ
        # Run logs live on local disk (an open file on a Volume blocks its reload) and are
        # copied to the job's folder with each checkpoint; locally the run folder is kept.
        self.run_dir, self.logs = run_logs(self.spec, self.job_dir, self.settings)
        self.times: dict[str, float] = {}
        self.recipe: Any = None
        self.loop: Loop | None = None
        self.init_error: PermanentError | None = None

    @contextlib.contextmanager
    def _deferred(self) -> Iterator[None]:
        """A permanent failure in an enter hook is kept for the call to report: raised from the
        hook, Modal would count it as a container failure and try again."""
        try:
            yield
        except PermanentError as exc:
            self.init_error = exc

    def _reload(self) -> None:
        guarded(self.volume.reload, f"checkpoint.volume {self.spec.checkpoint.volume}: reload")

    def _hold_job(self, driver: str) -> None:
        """See the latest commits, then hold the job for this call: under the pipeline
        driver's lease (`driver`, its call id), or one of the call's own; never beside another
        run of the job (LeaseHeld, permanent)."""
        self._reload()
        if driver:
            self.lease.join(driver)
        else:
            self.own_id = self.own_id or f"container-{os.getpid()}-{secrets.token_hex(4)}"
            self.lease.acquire(self.call_id() or self.own_id)

    def _begin_run(self, driver: str, given: str = "") -> None:
        """The run this call works for (its logs' folder): `given` (the run id `launch` or the
        driver handed this call on Modal), else the coordinator's id (LAUNCH_RUN_ID), else the
        pipeline driver's call id (`driver`), else this call's."""
        self.own_id = self.own_id or f"container-{os.getpid()}-{secrets.token_hex(4)}"
        self.logs.begin(given or run_id(self.settings, driver, self.call_id() or self.own_id))

    def _failed(self, exc: BaseException, owner: Any = None) -> dict[str, Any] | None:
        """`exc` located in the user's code (`owner`: the recipe class or stage function whose
        package is theirs), its traceback kept in the run's errors.log; as a permanent failure's
        result, or None: transient, to be raised."""
        checks.locate(exc, owner)
        return failed_result(exc, self.logs)

    def _given_up(self, failed: dict[str, Any]) -> dict[str, Any]:
        """A failure no retry can fix, as the call's result: the run is over, so the job's lease
        is released (best effort: it goes stale otherwise; one held by another run stays theirs)."""
        with contextlib.suppress(VolumeError):
            self.lease.release()
        events.log(f"error: {failed['error']}")
        return failed

    def _build_recipe(self) -> Any:
        return build_recipe(self.spec, import_recipe(self.spec.train.recipe))

    def _new_loop(self) -> Loop:
        raise NotImplementedError

    def _rebuilt(self, old: Loop | None) -> Loop:
        """The rebuild: `old` closed and its device memory freed, the recipe built again on CPU
        (seeded, the imports done), and a new loop on it, not yet placed."""
        if old is not None:
            old.release()
        self.recipe = self._build_recipe()
        return self._new_loop()

    def _prepared(self, loop: Loop | None, resume: bool, skip: Collection[int] = ()) -> Loop:
        """`loop` (or a new one) placed and resumed. A load that fails part-way leaves its recipe
        and Accelerator half loaded: both are rebuilt before the next checkpoint, or a fresh
        start."""
        skipped = set(skip)
        loop = loop or self._new_loop()
        while True:
            try:
                loop.prepare(resume, skipped)
                return loop
            except LoadFailed as exc:
                skipped.add(exc.step)
                loop = self._rebuilt(loop)


class Session(ContainerSession):
    def __init__(self, spec: dict[str, Any], volume: Volume | None = None,
                 call_id: Callable[[], str | None] | None = None,
                 settings: RuntimeSettings | None = None, stops: Requests | None = None,
                 reports: bool = False) -> None:
        """`volume` is the mounted volume (None: no stage 2, e.g. to build the recipe alone).
        `call_id` gives the id of the call being served (Modal's function call id): a retry of
        the same call takes the job's lease over. Without one, each container is a call.
        `settings`: the runtime's settings, as the entry parsed them (default: this process's).
        `stops`: where `launch stop` leaves requests (a modal.Dict on Modal; default: the local
        folder the settings name, if any), see runtime/control/stop.py. `reports`: this call is
        its run's coordinator (on Modal, a job without stages), which calls the spec's `notify:`
        webhook (locally the supervisor does)."""
        super().__init__(spec, volume if volume is not None else _Unmounted(), call_id, settings)
        self.reports = reports
        requests = stops if stops is not None else stop.local_requests(self.settings.control_dir)
        # The run a stop request names: a pipeline's driver (its call id), else this call.
        self.stops = None if requests is None else stop.StopWatch(
            requests, lambda: self.driver or self.call_id() or None)
        self.driver = ""  # the call id of the pipeline driver this call works under, if any
        # On Modal, for a train-only job: the run this call coordinates, and its record.
        self.run_info: dict[str, Any] | None = None
        self.recorder: Any = None
        self.attempt = 0
        checkpoints = self.spec.checkpoint
        self.lease = Lease(self.job_dir, self.volume, job=self.spec.name, volume_name=checkpoints.volume,
                           every_s=checkpoints.every_s, timeout_s=self.spec.compute.timeout_s)
        gpus = self.spec.compute.gpu_count if self.spec.compute.gpu else 1
        self.processes = self.settings.processes or gpus
        self.recipe_cls: type | None = None
        # Python's global `random` as the seeded build left it: a forked worker starts from it.
        self.random_state: tuple[Any, ...] | None = None

    @property
    def distributed(self) -> bool:
        return self.processes > 1 or self.spec.compute.nodes > 1

    def _starting(self, when: str) -> contextlib.AbstractContextManager[None]:
        """Before the first update, any exception is permanent: a retry would fail the same way."""
        return checks.first_update_pending(lambda: when, self.recipe_cls)

    @contextlib.contextmanager
    def _deferring_permanent(self, when: str) -> Iterator[None]:
        """Kept for `train` to report (`_deferred`), a failure before the first update included."""
        with self._deferred(), self._starting(when):
            yield

    def stage1(self) -> None:
        """Snapshot-able: nothing that depends on the volume's contents; GPU work only with
        `snapshot: gpu` (one process), where device placement moves here."""
        process.pause_gc()
        try:
            with self._deferring_permanent("in stage 1"), events.timed("stage1", self.times):
                self._stage1()
        finally:
            process.end_of_startup()  # what stage 1 made is frozen, before a snapshot or fork
        faults.point("stage1")

    def _stage1(self) -> None:
        import accelerate  # noqa: F401  heavy imports belong before the snapshot
        import torch  # noqa: F401

        if self.spec.train.tracker == "tensorboard":
            import torch.utils.tensorboard  # noqa: F401  slow to import; snapshot it too

        self.recipe_cls = import_recipe(self.spec.train.recipe)
        checks.check_class(self.recipe_cls, self.spec.train.recipe)
        check_objective(self.recipe_cls)
        self.recipe = self._build_recipe()  # seeded first
        if self.spec.snapshot == "gpu" and not self.distributed:
            # A GPU snapshot keeps device memory too: place the model before it is taken,
            # so a restore skips the host-to-device copy. Checkpoints still load after.
            self.loop = self._new_loop()
            self.loop.place()

    def _build_recipe(self) -> Any:
        assert self.recipe_cls is not None
        recipe = build_recipe(self.spec, self.recipe_cls)
        self.random_state = random.getstate()
        return recipe

    def stage2(self) -> None:
        """After restore: see the volume's latest commits, then (one process) prepare the loop.
        Reads the volume only: nothing is written before `train` holds the job's lease."""
        if self.init_error is not None:
            return
        with self._deferring_permanent("in stage 2"), events.timed("stage2", self.times):
            self._reload()
            # A pipeline's train reads prepare's data in setup(): in the call, after its reload
            # (a warm container may have booted before prepare committed it).
            if not self.distributed and self.spec.stage("prepare") is None:
                self.loop = self._prepared(self.loop, resume=True)
        faults.point("stage2")

    def _new_loop(self) -> Loop:
        return Loop(LoopContext(spec=self.spec, recipe=self.recipe, checkpoints=self.job_dir,
                                logs=self.logs, volume=self.volume, times=self.times,
                                lease=self.lease, folders=self._folders(), stops=self.stops))

    def _folders(self) -> StageFolders | None:
        """A pipeline's folders on the volume (prepare's data, stage results), if it has stages."""
        return StageFolders(self.root, self.spec.name) if self.spec.stages else None

    def _take_job(self, resume: bool = True) -> None:
        """See the latest commits, take the job's lease for this call, then (under it) clean up
        what killed attempts of this job left in its folder: temporary folders, and retention
        they did not get to (it is committed with the next commit); a run that does not resume
        deletes no checkpoint (its first save sets them aside)."""
        self._report_retry()
        self._hold_job(self.driver)  # a pipeline's train works under its driver's lease
        self._record_begin()
        for name in store.clean_temp(self.job_dir):
            events.log(f"removed leftover {name} from an earlier attempt")
        # An attempt killed between a commit and its retention left one checkpoint too many.
        newest = store.complete(self.job_dir) if self._resumes(resume) else []
        if newest:
            try:
                store.retain(self.job_dir, newest[0].step, self.spec.checkpoint.keep_last,
                             self.spec.checkpoint.keep_best)
            except store.CheckpointError as exc:
                events.log(f"warning: {exc}")
        faults.point("lease")

    def _record_begin(self) -> None:
        """On Modal, for a train-only job: this attempt, in the run's record (under the lease)."""
        if not self.run_info:
            return
        from launcher.runtime.runs import coordinator

        call_id = self.call_id() or self.own_id
        self.recorder = coordinator.record_for(self.job_dir, self.run_info, self.spec, call_id,
                                               commit=self._commit_record, say=events.log)
        objective = getattr(self.recipe_cls, "objective", None)
        if isinstance(objective, tuple) and len(objective) == 2:
            self.recorder.set_objective(str(objective[0]), str(objective[1]))
        self.attempt = coordinator.begin_attempt(self.recorder, "train", call_id)
        self.recorder.commit = None  # from here the record rides on the checkpoints' commits
        self.lease.on_beat = self._record_beat

    def _record_beat(self) -> None:
        """A commit is coming: the newest checkpoint and metrics go with it."""
        from launcher.runtime.runs import coordinator

        if self.recorder is None:
            return
        loop = self.loop
        if loop is not None and loop.last_metrics:
            self.recorder.metrics(loop.step, loop.last_metrics, force=False)
        newest = coordinator.newest_checkpoint(self.job_dir)
        if newest is not None and newest[0] != self.recorder.record.newest_step:
            self.recorder.checkpoint(*newest)  # saved, and committed by the caller
        else:
            self.recorder.save()

    def _record_end(self, status: str | None, error: str | None,
                    result: dict[str, Any] | None = None, outcome: str = "transient") -> None:
        """This attempt's end; with `status`, the run's (None: Modal retries the call)."""
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            return
        self.lease.on_beat = None
        recorder.commit = self._commit_record
        if result:
            recorder.result(result)
        recorder.history(recorder.path.parent / METRICS)
        recorder.attempt_ended("train", self.attempt, status or outcome, error or "")
        if status is not None:
            recorder.end(status, error)

    def _commit_record(self) -> None:
        with contextlib.suppress(VolumeError):
            guarded(self.volume.commit, f"checkpoint.volume {self.spec.checkpoint.volume}: commit")
    def _report_retry(self) -> None:
        """A call that coordinates its run, finding the job's lease held by an earlier attempt
        of this very call: Modal retried (or restarted) it; said to the spec's webhook."""
        call = self.call_id()
        if not self.reports or self.driver or not call:
            return
        self._reload()
        held = read_lease(self.job_dir)
        if held is not None and held.call_id == call:
            notify.send(self.spec, "retried", call)

    def _resumes(self, resume: bool) -> bool:
        return resume_policy.resumes(resume, self.spec.checkpoint.resume)

    def train(self, resume: bool = True, steps: int | None = None, cluster: Any = None,
              lease: str = "", run: dict[str, Any] | None = None, run_id: str = "") -> dict[str, Any]:
        """Run to `steps` (default train.steps) updates in total. Re-entrant on a warm container.
        `lease`: the call id of the pipeline driver whose lease of the job this call works under
        (empty: the call takes the lease itself). `run`: on Modal, a train-only job's run (its
        id and what `launch` knew): this call is its coordinator and keeps its record; `run_id`:
        a pipeline's train, the run's id from its driver.

        A failure that no retry can fix returns {"status": "permanent", ...} instead of raising:
        Modal retries every exception, and retrying a diverged loss only repeats it.
        """
        total = steps or self.spec.train.steps
        self.driver = lease
        self.run_info = run if run and not lease else None
        if run or run_id:  # the run's id, as every process of a local run has it (LAUNCH_RUN_ID)
            from launcher.runtime.runs.coordinator import adopt_run_id

            adopt_run_id(str(run["id"]) if run else run_id)
        self._begin_run(lease, str(run["id"]) if run else run_id)
        objective = getattr(self.recipe_cls, "objective", None)
        if isinstance(objective, tuple) and len(objective) == 2:  # for the run's record
            events.emit("objective", name=str(objective[0]), mode=str(objective[1]))
        try:
            if self.init_error is not None:
                raise self.init_error
            if self.distributed:
                result = self._train_distributed(resume, total, cluster)
            else:
                result = self._train_here(resume, total)
        except Exception as exc:
            outcome = self._failed(exc, self.recipe_cls)
            if outcome is None:
                self._record_end(None, headline(exc),
                                 outcome="preempted" if isinstance(exc, Preempted) else "transient")
                raise  # transient: retried (its traceback is kept, its line logged)
            self._record_end("failed", outcome["error"])
            given_up = self._given_up(outcome)  # the lease released before the webhook is asked
            self._report("failed", outcome)
            return given_up
        self._record_end("finished" if result.get("status") == "finished" else "stopped", None, result)
        self.lease.release()
        faults.point("released")
        self._report(result.get("status", "finished"), result)
        return result

    def _report(self, status: str, result: dict[str, Any]) -> None:
        """The run's end, to the spec's webhook, when this call coordinates its run."""
        if not self.reports:
            return
        seconds = result.get("seconds")
        run = (self.run_info or {}).get("id") or self.call_id() or self.own_id
        notify.send(self.spec, status, str(run),
                    objective=notify.objective_of(result), detail=str(result.get("error") or ""),
                    cost_usd=notify.estimate(self.spec, {"train": seconds}) if seconds else None)

    def _train_here(self, resume: bool, total: int) -> dict[str, Any]:
        with self._starting("at the start of train"):
            # Always look at the volume again: a warm container (min_containers, a retry landing
            # on the same container) may have loaded its checkpoint long before this call.
            self._take_job(resume)
            if self.loop is None:  # a pipeline's train: its data is read now (see stage2)
                self.loop = self._prepared(None, resume)
            elif not self.loop.state.reusable(resume) or self._data_changed():
                # A half-applied update, fresh weights asked for, or prepare's data changed
                # since: rebuild the recipe on CPU (the imports are done) and load the newest
                # checkpoint, unless asked not to.
                self.loop = self._prepared(self._rebuilt(self.loop), resume)
            elif resume:
                self.loop = self._caught_up(self.loop)
        return self.loop.run(total)

    def _data_changed(self) -> bool:
        """A warm container's recipe holds prepare's data as it was: has prepare run since?"""
        folders = self._folders()
        if folders is None or self.spec.stage("prepare") is None or self.loop is None:
            return False
        return stages.data_digest(folders) != self.loop.checkpoints.data_digest

    def _caught_up(self, loop: Loop) -> Loop:
        try:
            loop.catch_up()
            return loop
        except LoadFailed as exc:
            return self._prepared(self._rebuilt(loop), True, skip={exc.step})

    def _train_distributed(self, resume: bool, total: int, cluster: Any) -> dict[str, Any]:
        from accelerate import notebook_launcher

        from launcher.runtime.lifecycle.rendezvous import rendezvous

        where = rendezvous(cluster, self.spec.compute.nodes)
        with self._starting("at the start of train"):
            if where.is_global_rank0_node:
                self._take_job(resume)
            else:
                self._reload()
        result_file = self.run_dir / f"result-node{where.node_rank}.json"
        result_file.unlink(missing_ok=True)
        try:
            notebook_launcher(self._worker, args=(resume, total, str(result_file)),
                              num_processes=self.processes,
                              mixed_precision=self.spec.train.mixed_precision,
                              master_addr=where.master_addr, use_port=str(where.port),
                              node_rank=where.node_rank, num_nodes=where.nodes)
        except BaseException:
            # The elastic agent passes a stop signal on to the workers, which checkpoint
            # together and record why they stopped before the agent reports them as failed.
            status = results.read(result_file)
            if status.get("status") == "preempted":
                raise Preempted("stopped on a signal; checkpoint committed") from None
            if status.get("status") == "permanent":
                raise failed(status) from None
            if status.get("status") == "transient":  # a rank's own failure, where it was raised
                raise rebuilt(status) from None
            raise
        return results.read(result_file) if where.node_rank == 0 else {"node_rank": where.node_rank}

    def _worker(self, resume: bool, total: int, result_file: str) -> None:
        """One process of a distributed run (forked: the recipe from stage 1 is inherited)."""
        lifeline.rearm()  # dies with the process that forked it
        # Python reseeds its global `random` from the OS in every forked child (random.py
        # registers `seed` with os.register_at_fork): without this, a recipe drawing from it
        # would differ between two runs of one spec, and a resumed run from its checkpoint.
        if self.random_state is not None:
            random.setstate(self.random_state)
        loop = None
        try:
            with self._starting("in stage 2"), events.timed("stage2-worker", self.times):
                loop = self._prepared(None, resume)
            loop.run(total, result_file=Path(result_file))
        except Exception as exc:
            outcome = self._failed(exc, self.recipe_cls)
            if outcome is not None:
                results.write(Path(result_file), outcome)
            elif not isinstance(exc, Preempted) and not Path(result_file).exists():
                # The first rank to fail says why (the others fail on it after); the agent
                # reports every failed worker alike.
                results.write(Path(result_file), {"status": "transient", **describe(exc)})
            raise
        finally:
            if loop is not None:
                loop.close()  # this process ends here: its pending saves first

    def shutdown(self) -> None:
        """Exit hook: write what is unsaved. A safety net: the loop saves on a stop signal and at
        its end, and never saves a state left by a failed update."""
        if self.loop is not None:
            if self.loop.unsaved:
                self.loop.save()
                events.log(f"final checkpoint after update {self.loop.step} written in the exit hook")
            self.loop.close()
        faults.point("exit")
