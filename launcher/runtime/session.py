"""The runtime inside the container: what the generated app's lifecycle hooks call.

    stage1()  @modal.enter(snap=True)   heavy imports; the recipe is built on CPU
    stage2()  @modal.enter(snap=False)  volume reload; Accelerator; newest checkpoint loaded
    train()   @modal.method()           the loop: steps, logs, checkpoint + commit at the cadence
    shutdown() @modal.exit()            a final checkpoint + commit if anything is unsaved

With more than one process (gpu_count > 1, nodes > 1, or --processes locally), stage 1 runs
once in the container's main process and `train` forks one worker per GPU through
Accelerate's `notebook_launcher`; each worker inherits the CPU-built recipe, so stage 1 is
not repeated, and does its own stage 2 (device placement needs its own process).

Imports neither click, Jinja nor jsonschema.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

from launcher.runtime import checkpoint, events
from launcher.runtime.failures import PermanentError, Preempted
from launcher.runtime.loop import Loop
from launcher.spec.model import JobSpec


def import_recipe(ref: str) -> type:
    """The recipe class named `module:Class`; a failure is permanent (a retry cannot fix it)."""
    module_name, _, class_name = ref.partition(":")
    if os.getcwd() not in sys.path:  # a user's recipe module next to their specs, locally
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PermanentError(f"train.recipe: cannot import {module_name!r}: "
                             f"{type(exc).__name__}: {exc}") from exc
    recipe = getattr(module, class_name, None)
    if not isinstance(recipe, type):
        raise PermanentError(f"train.recipe: {module_name!r} has no class {class_name!r}")
    return recipe


class Session:
    def __init__(self, spec: dict[str, Any], volume: Any = None) -> None:
        self.spec = JobSpec.from_dict(spec)
        self.volume = volume
        self.root = Path(os.environ.get("LAUNCH_CHECKPOINT_DIR") or self.spec.checkpoint.mount)
        self.run_dir = Path(os.environ.get("LAUNCH_RUN_DIR") or self.root / "runs" / self.spec.name)
        gpus = self.spec.compute.gpu_count if self.spec.compute.gpu else 1
        self.processes = int(os.environ.get("LAUNCH_PROCESSES") or gpus)
        self.times: dict[str, float] = {}
        self.recipe: Any = None
        self.recipe_cls: type | None = None
        self.loop: Loop | None = None  # single process: prepared in stage 2, kept for reuse

    @property
    def distributed(self) -> bool:
        return self.processes > 1 or self.spec.compute.nodes > 1

    def stage1(self) -> None:
        """Snapshot-able: nothing that depends on the volume's contents; GPU work only with
        `snapshot: gpu` (one process), where device placement moves here."""
        with events.timed("stage1", self.times):
            import accelerate  # noqa: F401  heavy imports belong before the snapshot
            import torch  # noqa: F401
            from accelerate.utils import set_seed

            if self.spec.train.tracker == "tensorboard":
                import torch.utils.tensorboard  # noqa: F401  slow to import; snapshot it too

            set_seed(self.spec.train.seed)
            self.recipe_cls = import_recipe(self.spec.train.recipe)
            self.recipe = self.build_recipe()
            if self.spec.snapshot == "gpu" and not self.distributed:
                # A GPU snapshot keeps device memory too: place the model before it is taken,
                # so a restore skips the host-to-device copy. Checkpoints still load after.
                self.loop = Loop(self)
                self.loop.place()

    def build_recipe(self) -> Any:
        assert self.recipe_cls is not None
        try:
            return self.recipe_cls(dict(self.spec.train.config), self.spec.train.seed)
        except (TypeError, ValueError, KeyError) as exc:
            raise PermanentError(f"train.config: {self.spec.train.recipe} rejected it: {exc}") from exc

    def stage2(self) -> None:
        """After restore: see the volume's latest commits, then (one process) prepare the loop."""
        with events.timed("stage2", self.times):
            self.reload_volume()
            if not self.distributed:
                self.loop = self.loop or Loop(self)
                self.loop.prepare(resume=True)

    def reload_volume(self) -> None:
        if self.volume is not None and hasattr(self.volume, "reload"):
            self.volume.reload()
        if os.environ.get("RANK", "0") == "0":
            for name in checkpoint.clean_temp(self.root):
                events.log(f"removed leftover {name} from an earlier attempt")

    def commit(self) -> None:
        if self.volume is not None and hasattr(self.volume, "commit"):
            self.volume.commit()

    def train(self, resume: bool = True, steps: int | None = None, cluster: Any = None) -> dict[str, Any]:
        """Run to `steps` (default train.steps) updates in total. Re-entrant on a warm container."""
        total = steps or self.spec.train.steps
        if not self.distributed:
            assert self.loop is not None, "stage2 must run before train"
            if self.loop.used:  # a second call on a warm container: stage 1 and 2 are not redone
                self.reload_volume()
            if not resume and (self.loop.used or self.loop.resumed_from):
                # Fresh weights need a fresh recipe: rebuilt on CPU, the imports already done.
                self.recipe = self.build_recipe()
                self.loop = Loop(self)
                self.loop.prepare(resume=False)
            elif self.loop.used:
                self.loop.catch_up()
            return self.loop.run(total)
        return self._train_distributed(resume, total, cluster)

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
            # A stop signal reaches the workers through the elastic agent (SIGTERM); they
            # checkpoint together and record it before the agent reports them as failed.
            if Loop.read_result(result_file).get("status") == "preempted":
                raise Preempted("stopped on a signal; checkpoint committed") from None
            raise
        return Loop.read_result(result_file) if where.node_rank == 0 else {"node_rank": where.node_rank}

    def _worker(self, resume: bool, total: int, result_file: str) -> None:
        """One process of a distributed run (forked: the recipe from stage 1 is inherited)."""
        loop = Loop(self)
        with events.timed("stage2-worker", self.times):
            loop.prepare(resume=resume)
        loop.run(total, result_file=Path(result_file))

    def shutdown(self) -> None:
        """Exit hook: write what is unsaved. (The loop already saved on a stop signal.)"""
        if self.loop is not None and self.loop.unsaved:
            self.loop.save()
            events.log(f"final checkpoint at step {self.loop.step} written in the exit hook")
