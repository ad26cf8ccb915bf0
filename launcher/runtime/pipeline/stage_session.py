"""The runtime behind a stage's Modal class: `prepare` or `evaluate` (see stages.py).

    stage1()    @modal.enter(snap=True)   imports: the stage's module (and for evaluate, the
                                          recipe built on CPU, as train's stage 1 builds it)
    stage2()    @modal.enter(snap=False)  volume reload (evaluate: Accelerator, recipe.setup,
                                          the newest complete checkpoint loaded)
    run()       @modal.method()           under the job's lease (the pipeline driver's, when
                                          given its call id), the stage function, its result
                                          and marker committed
    shutdown()  @modal.exit()             nothing left open

The same hooks run locally through `launcher.runtime.lifecycle.container`, one worker per attempt.
Imports neither click, Jinja nor jsonschema.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from launcher.runtime import events, faults
from launcher.runtime.failures import PermanentError
from launcher.runtime.lease import Lease
from launcher.runtime.pipeline import stages
from launcher.runtime.pipeline.results import Status
from launcher.runtime.pipeline.stages import StageContext, StageFolders
from launcher.runtime.settings import RuntimeSettings
from launcher.runtime.storage import disk
from launcher.runtime.storage.volume import Volume
from launcher.runtime.train.context import LoopContext
from launcher.runtime.train.loop import Loop
from launcher.runtime.train.session import ContainerSession, failed_result
from launcher.spec.model import StageName
from launcher.spec.refs import RefError, import_ref


def import_function(stage: str, ref: str) -> Callable[[StageContext], Any]:
    """The stage function named `module:function`; a failure is permanent."""
    try:
        function = import_ref(ref)
    except RefError as exc:
        raise PermanentError(f"stages.{stage}.run: {exc}") from exc
    if not callable(function):
        raise PermanentError(f"stages.{stage}.run: {ref!r} is not a function")
    return function  # type: ignore[return-value]


class StageSession(ContainerSession):
    def __init__(self, spec: dict[str, Any], stage: StageName, volume: Volume,
                 commit: str | None = None, call_id: Callable[[], str | None] | None = None,
                 settings: RuntimeSettings | None = None) -> None:
        """`commit`: the git commit the image holds (`image.code: git`), None for local code;
        `call_id`: the id of the call being served (Modal's function call id), which takes the
        job's lease when no pipeline driver holds it for this call; `settings`: the runtime's
        settings, as the entry parsed them (default: this process's)."""
        super().__init__(spec, volume, call_id, settings)
        found = self.spec.stage(stage)
        if found is None:
            raise PermanentError(f"the spec has no stages.{stage}")
        self.stage = found
        self.folders = StageFolders(self.root, self.spec.name)
        self.commit = commit
        checkpoints = self.spec.checkpoint
        self.lease = Lease(self.folders.job, volume, job=self.spec.name, volume_name=checkpoints.volume,
                           every_s=None, timeout_s=found.compute.timeout_s)
        self.function: Callable[[StageContext], Any] | None = None  # evaluate's loop: self.loop

    def stage1(self) -> None:
        with self._deferred(), events.timed(f"{self.stage.name} stage1", self.times):
            self.function = import_function(self.stage.name, self.stage.run)
            if self.stage.name == "evaluate":
                self.recipe = self._build_recipe()

    def stage2(self) -> None:
        if self.init_error is not None:
            return
        with self._deferred(), events.timed(f"{self.stage.name} stage2", self.times):
            self._reload()
            if self.recipe is not None:
                self.loop = self._loaded_loop()

    def _loaded_loop(self) -> Loop:
        """The recipe placed through Accelerate, with the newest complete checkpoint loaded."""
        loop = self._prepared(None, resume=True)
        if not loop.step:
            raise PermanentError(f"stages.{self.stage.name}: no complete checkpoint of "
                                 f"{self.spec.name} to evaluate; train has not saved one")
        return loop

    def _new_loop(self) -> Loop:
        # checkpoint.resume is train's choice; evaluate always takes what train saved last.
        spec = dataclasses.replace(self.spec, checkpoint=dataclasses.replace(
            self.spec.checkpoint, resume="auto"))
        # Train's checkpoints, where its Session keeps them, whatever its process count.
        return Loop(LoopContext(spec=spec, recipe=self.recipe, checkpoints=self.folders.job,
                                run_dir=self.run_dir / self.stage.name, volume=self.volume,
                                times=self.times, folders=self.folders, reads_only=True))

    def run(self, lease: str = "") -> dict[str, Any]:
        """The stage's result; a failure no retry can fix is returned, not raised (Modal
        retries every exception). `lease`: the call id of the pipeline driver whose lease of
        the job this call works under; empty: the call takes the lease itself, for its run."""
        try:
            if self.init_error is not None:
                raise self.init_error
            self._hold_job(lease)
            result = self._run()
        except Exception as exc:
            failed = failed_result(exc, self.run_dir)
            if failed is None:
                raise  # transient: retried (its traceback is kept)
            return {"stage": self.stage.name, **self._given_up(failed)}
        self.lease.release()
        return result

    def _context(self, data_dir: Path) -> StageContext:
        loop = self.loop
        return StageContext(stage=self.stage.name, config=dict(self.stage.config),
                            seed=self.spec.train.seed, data_dir=data_dir, log=events.log,
                            recipe=self.recipe, accelerator=None if loop is None else loop.acc,
                            checkpoint_step=None if loop is None else loop.step,
                            inputs=stages.input_paths(self.spec, self.stage.name))

    def _data_dir(self) -> Path:
        """prepare: an empty staging folder, published as the data folder only when it
        finishes (the old marker withdrawn first, and committed); evaluate: the data folder."""
        if self.stage.name != "prepare":
            self.folders.data.mkdir(parents=True, exist_ok=True)
            return self.folders.data
        missing = stages.missing_inputs(self.spec, self.stage.name)
        if missing is not None:
            raise missing
        staging = stages.begin_prepare(self.folders)
        self.volume.commit()
        return staging

    def _run(self) -> dict[str, Any]:
        assert self.function is not None, "stage1 must run before run"
        started = time.perf_counter()
        data_dir = self._data_dir()
        # Taken before the function runs: an input file changed while it ran is a change the
        # next run sees, never one this result claims to have used.
        inputs = stages.inputs(self.spec, self.stage.name, self.commit)
        try:
            returned = self.function(self._context(data_dir))
        except ModuleNotFoundError as exc:  # no retry installs it
            raise PermanentError(f"stages.{self.stage.name}.run: {self.stage.run} needs a module "
                                 f"that is not installed ({exc}); add it to the image and to this "
                                 "machine's environment") from exc
        except Exception as exc:  # a full or read-only disk: no retry frees it
            found = disk.error(exc, f"stages.{self.stage.name} failed writing its data",
                               self.folders.data, otherwise=self.folders.data)
            if found is None:
                raise
            raise found from exc
        metrics = stages.metrics_of(self.stage.name, returned)
        faults.point(f"{self.stage.name}-run")  # done, but nothing committed yet
        result = {"stage": self.stage.name, "status": Status.FINISHED, "metrics": metrics,
                  "digest": stages.digest(inputs), "inputs": inputs,
                  "seconds": round(time.perf_counter() - started, 3),
                  "checkpoint_step": None if self.loop is None else self.loop.step}
        if self.stage.name == "prepare":
            result = stages.publish_prepare(self.folders, result)
        else:
            stages.write_result(self.folders, self.stage.name, result)
        self.volume.commit()  # the data and the result together: the stage is done
        faults.point(f"{self.stage.name}-done")
        events.log(f"{self.stage.name} finished: " + stages.describe(metrics))
        events.emit("result", **result)
        return result

    def shutdown(self) -> None:
        if self.loop is not None:
            self.loop.close()
