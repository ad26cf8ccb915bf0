"""The runtime inside the container: the plain object behind the generated app's Modal class.

    stage1()   @modal.enter(snap=True)   heavy imports; the recipe is built on CPU
    stage2()   @modal.enter(snap=False)  volume reload; Accelerator; newest checkpoint loaded
    train()    @modal.method()           the loop: steps, logs, checkpoint + commit at the cadence
    shutdown() @modal.exit()             a final checkpoint + commit if anything is unsaved

Each Modal hook calls the session hook of the same name and nothing else; locally,
`launcher.runtime.lifecycle` calls the same hooks in the same order. The session owns the
container's state across calls: the spec, the volume, where checkpoints and run files live,
the recipe (built in stage 1, rebuilt after a failed update) and its loop, stage timings, and
the choice between one process and many. It hands a loop a `LoopContext`; the loop owns the
updates and talks to its checkpoint manager, and neither looks back at the session.

With more than one process (gpu_count > 1, nodes > 1, or --processes locally), stage 1 runs
once in the container's main process and `train` forks one worker per GPU through
Accelerate's `notebook_launcher`; each worker inherits the CPU-built recipe, so stage 1 is
not repeated, and does its own stage 2 (device placement needs its own process).

Imports neither click, Jinja nor jsonschema.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from launcher.runtime import checkpoint, events, results
from launcher.runtime.context import LoopContext
from launcher.runtime.failures import PermanentError, Preempted
from launcher.runtime.loop import Loop
from launcher.runtime.stages import StageFolders
from launcher.runtime.volume import LocalVolume, Volume
from launcher.spec.model import JobSpec
from launcher.spec.refs import RefError, import_ref


def import_recipe(ref: str) -> type:
    """The recipe class named `module:Class`; a failure is permanent (a retry cannot fix it)."""
    try:
        recipe = import_ref(ref)
    except RefError as exc:
        raise PermanentError(f"train.recipe: {exc}") from exc
    if not isinstance(recipe, type):
        raise PermanentError(f"train.recipe: {ref!r} is not a class")
    return recipe


class Session:
    def __init__(self, spec: dict[str, Any], volume: Volume | None = None) -> None:
        self.spec = JobSpec.from_dict(spec)
        self.root = Path(os.environ.get("LAUNCH_CHECKPOINT_DIR") or self.spec.checkpoint.mount)
        self.volume: Volume = volume if volume is not None else LocalVolume(self.root)
        # Tracker files live on local disk (an open file on a Volume blocks its reload) and are
        # mirrored to the volume with each checkpoint; locally the run folder is kept as it is.
        local_runs = Path(tempfile.gettempdir()) / "launch-runs" / self.spec.name
        self.run_dir = Path(os.environ.get("LAUNCH_RUN_DIR") or local_runs)
        self.log_mirror = None if os.environ.get("LAUNCH_RUN_DIR") else self.root / "runs" / self.spec.name
        gpus = self.spec.compute.gpu_count if self.spec.compute.gpu else 1
        self.processes = int(os.environ.get("LAUNCH_PROCESSES") or gpus)
        self.times: dict[str, float] = {}
        self.recipe: Any = None
        self.recipe_cls: type | None = None
        self.loop: Loop | None = None  # single process: prepared in stage 2, kept for reuse
        self.init_error: PermanentError | None = None

    @property
    def distributed(self) -> bool:
        return self.processes > 1 or self.spec.compute.nodes > 1

    @contextlib.contextmanager
    def _deferring_permanent(self) -> Iterator[None]:
        """A permanent failure in an enter hook is kept for `train` to report: raised from the
        hook, Modal would count it as a container failure and try again."""
        try:
            yield
        except PermanentError as exc:
            self.init_error = exc

    def stage1(self) -> None:
        """Snapshot-able: nothing that depends on the volume's contents; GPU work only with
        `snapshot: gpu` (one process), where device placement moves here."""
        with self._deferring_permanent(), events.timed("stage1", self.times):
            import accelerate  # noqa: F401  heavy imports belong before the snapshot
            import torch  # noqa: F401
            from accelerate.utils import set_seed

            if self.spec.train.tracker == "tensorboard":
                import torch.utils.tensorboard  # noqa: F401  slow to import; snapshot it too

            set_seed(self.spec.train.seed)
            self.recipe_cls = import_recipe(self.spec.train.recipe)
            self.recipe = self._build_recipe()
            if self.spec.snapshot == "gpu" and not self.distributed:
                # A GPU snapshot keeps device memory too: place the model before it is taken,
                # so a restore skips the host-to-device copy. Checkpoints still load after.
                self.loop = self._new_loop()
                self.loop.place()

    def _build_recipe(self) -> Any:
        assert self.recipe_cls is not None
        try:
            return self.recipe_cls(dict(self.spec.train.config), self.spec.train.seed)
        except (TypeError, ValueError, KeyError) as exc:
            raise PermanentError(f"train.config: {self.spec.train.recipe} rejected it: {exc}") from exc

    def stage2(self) -> None:
        """After restore: see the volume's latest commits, then (one process) prepare the loop."""
        if self.init_error is not None:
            return
        with self._deferring_permanent(), events.timed("stage2", self.times):
            self._reload_volume()
            if not self.distributed:
                self.loop = self.loop or self._new_loop()
                self.loop.prepare(resume=True)

    def _new_loop(self) -> Loop:
        return Loop(LoopContext(spec=self.spec, recipe=self.recipe, checkpoints=self.root,
                                run_dir=self.run_dir, volume=self.volume, times=self.times,
                                log_mirror=self.log_mirror, folders=self._folders()))

    def _folders(self) -> StageFolders | None:
        """A pipeline's folders on the volume (prepare's data, stage results), if it has stages."""
        return StageFolders(self.root, self.spec.name) if self.spec.stages else None

    def _reload_volume(self) -> None:
        self.volume.reload()
        if os.environ.get("RANK", "0") == "0":
            for name in checkpoint.clean_temp(self.root):
                events.log(f"removed leftover {name} from an earlier attempt")

    def train(self, resume: bool = True, steps: int | None = None, cluster: Any = None) -> dict[str, Any]:
        """Run to `steps` (default train.steps) updates in total. Re-entrant on a warm container.

        A failure that no retry can fix returns {"status": "permanent", ...} instead of raising:
        Modal retries every exception, and retrying a diverged loss only repeats it.
        """
        total = steps or self.spec.train.steps
        try:
            if self.init_error is not None:
                raise self.init_error
            if self.distributed:
                self._reload_volume()
                return self._train_distributed(resume, total, cluster)
            return self._train_here(resume, total)
        except PermanentError as exc:
            events.log(f"error: {exc}")
            return {"status": "permanent", "error": str(exc)}

    def _train_here(self, resume: bool, total: int) -> dict[str, Any]:
        assert self.loop is not None, "stage2 must run before train"
        # Always look at the volume again: a warm container (min_containers, a retry landing on
        # the same container) may have loaded its checkpoint long before this call.
        self._reload_volume()
        if self.loop.failed or (not resume and (self.loop.used or self.loop.resumed_from)):
            # A half-applied update, or fresh weights asked for: rebuild the recipe on CPU (the
            # imports are done) and load the newest checkpoint, unless asked not to.
            self.loop.release()
            self.recipe = self._build_recipe()
            self.loop = self._new_loop()
            self.loop.prepare(resume=resume)
        elif resume:
            self.loop.catch_up()
        return self.loop.run(total)

    def _train_distributed(self, resume: bool, total: int, cluster: Any) -> dict[str, Any]:
        from accelerate import notebook_launcher

        from launcher.runtime.rendezvous import rendezvous

        where = rendezvous(cluster, self.spec.compute.nodes)
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
                raise PermanentError(status["error"]) from None
            raise
        return results.read(result_file) if where.node_rank == 0 else {"node_rank": where.node_rank}

    def _worker(self, resume: bool, total: int, result_file: str) -> None:
        """One process of a distributed run (forked: the recipe from stage 1 is inherited)."""
        loop = self._new_loop()
        try:
            with events.timed("stage2-worker", self.times):
                loop.prepare(resume=resume)
            loop.run(total, result_file=Path(result_file))
        except PermanentError as exc:
            results.write(Path(result_file), {"status": "permanent", "error": str(exc)})
            raise
        finally:
            loop.close()  # this process ends here: its pending saves first

    def shutdown(self) -> None:
        """Exit hook: write what is unsaved. A safety net: the loop saves on a stop signal and at
        its end, and never saves a state left by a failed update."""
        if self.loop is None:
            return
        if self.loop.unsaved:
            self.loop.save()
            events.log(f"final checkpoint at step {self.loop.step} written in the exit hook")
        self.loop.close()
