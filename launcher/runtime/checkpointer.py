"""The checkpoint manager: what the loop calls to resume and to save, one process or many.

Public face (all the loop may use):

    resume() -> Restored      the newest loadable checkpoint, loaded; step 0 when none
    newest_step() -> int|None the newest complete checkpoint on the volume (not loaded)
    save(step, extra)         write, publish, mirror the logs, commit, then apply retention
    wait()                    return once every save handed over so far is committed
    close()                   wait, then refuse further saves (end of this loop's life)
    written, seconds          checkpoints written, seconds the caller was held up by them
    background                whether saves are written by the background writer

It owns the checkpoint work: what goes into one (Accelerate's `save_state`, each rank's
recipe state, a manifest `extra` with the model's config and the world size), the checks on
resume (a changed model is refused), retention, and the distributed protocol (global rank 0
picks the checkpoint and every rank loads it; every rank stages its part, rank 0 alone
publishes and commits). Storage is the stdlib store in `checkpoint.py`; durability is the
volume's `commit()`. It never reaches into the loop or the session: everything it needs is
in the `LoopContext` and the Accelerator it is given.

With `checkpoint.async` (on by default where it is safe: one process), `save` copies the
state to host memory in the training thread (`snapshot.py`: the RNG states of that moment
included) and returns; a background thread (`writer.py`) writes, fsyncs, publishes, mirrors
the logs, commits and applies retention, in the same order and with the same guarantees as a
synchronous save. At most one write is in flight: the next `save` waits for it first, and
`wait()` (before every result) and `close()` wait for it too. A kill during a background
write leaves the previous checkpoint as the newest complete one. With more than one process
saves stay synchronous: every rank takes part in them, collectives included.

Constructing a manager touches no storage (it may happen before a memory snapshot, with
`snapshot: gpu`): storage is first looked at in `resume()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.runtime import checkpoint, events, faults
from launcher.runtime.context import LoopContext
from launcher.runtime.failures import PermanentError
from launcher.runtime.writer import Writer


@dataclass(frozen=True)
class Restored:
    step: int  # 0: nothing was loaded
    extra: dict[str, Any] = field(default_factory=dict)  # the manifest's `extra` of the one loaded


def _to_cpu(value: Any) -> Any:
    if hasattr(value, "detach"):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _warn(message: str) -> None:
    events.log(f"warning: {message}")


def _manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / checkpoint.MANIFEST).read_text())


def checkpointer(ctx: LoopContext, acc: Any) -> Checkpointer:
    """The manager for this process: the distributed protocol with more than one process."""
    return Checkpointer(ctx, acc) if acc.num_processes == 1 else DistributedCheckpointer(ctx, acc)


class Checkpointer:
    """One process: it picks, loads, writes and publishes on its own."""

    def __init__(self, ctx: LoopContext, acc: Any) -> None:
        self.ctx = ctx
        self.acc = acc
        self.written = 0
        self.seconds = 0.0
        self.closed = False
        self.background = self._background(ctx.spec.checkpoint.async_write)
        self._writer = Writer()
        self._copies: Any = None  # host buffers for background saves, made at the first one
        self._staging: Path | None = None

    def _background(self, setting: bool | str) -> bool:
        if setting is False:
            return False
        from launcher.runtime import snapshot

        if snapshot.supported(self.acc):
            return True
        if setting is True:
            _warn(f"checkpoint.async is true, but with {self.acc.num_processes} process(es) "
                  f"({self.acc.distributed_type}) checkpoints are written in the training loop")
        return False

    # -- public face -------------------------------------------------------------------

    def resume(self) -> Restored:
        try:
            restored = self._find_and_load()
        except checkpoint.Incompatible as exc:
            raise PermanentError(str(exc)) from exc
        events.log(f"resumed from step {restored.step}" if restored.step else
                   "no checkpoint: starting fresh")
        return restored

    def newest_step(self) -> int | None:
        newest = checkpoint.complete(self.ctx.checkpoints)
        return newest[0].step if newest else None

    def save(self, step: int, extra: dict[str, Any]) -> None:
        """Checkpoint this state as `step`; `extra` (numbers, strings) goes into the manifest."""
        if self.closed:
            raise RuntimeError("the checkpoint manager is closed")
        started = time.perf_counter()
        self._writer.wait()  # one write in flight at most; one that failed raises here
        extra = {**extra, "model_config": self.model_config(), "world_size": self.acc.num_processes}
        if self.background:
            self._save_later(step, extra, started)
        else:
            self._save(step, [_to_cpu(self.ctx.recipe.state_dict())], extra)
            self._written(step, started)
        self.seconds += time.perf_counter() - started

    def _written(self, step: int, started: float, stall: float | None = None) -> None:
        self.written += 1
        seconds = time.perf_counter() - started
        events.emit("checkpoint", step=step, seconds=seconds,
                    stall=seconds if stall is None else stall)

    def _save_later(self, step: int, extra: dict[str, Any], started: float) -> None:
        """Copy now, in this thread; write, publish and commit on the writer thread."""
        from launcher.runtime import snapshot

        first = self._copies is None
        if first:
            self._copies = snapshot.HostCopies(pin=self.acc.device.type == "cuda")
            self._staging = Path(tempfile.mkdtemp(prefix="launch-snapshots-"))
        assert self._staging is not None
        # A copy, not a view: the recipe may change its tensors in place while this is written.
        states = [self._copies.copy(self.ctx.recipe.state_dict(), ("recipe",))]
        snap = snapshot.take(self.acc, self._copies, self._staging)
        if first:
            events.log(f"checkpoints are written in the background; a copy of the state takes "
                       f"{self._copies.nbytes / 2**20:,.1f} MiB of host memory")
        stall = time.perf_counter() - started

        def write() -> None:
            try:
                self._publish(step, lambda tmp: self._write(tmp, states, snap.write), extra)
            finally:
                snap.discard()
            self._written(step, started, stall)

        self._writer.submit(write)

    def wait(self) -> None:
        """Return once every save handed over so far is committed (or raise why it was not)."""
        started = time.perf_counter()
        try:
            self._writer.wait()
        finally:
            self.seconds += time.perf_counter() - started

    def close(self) -> None:
        self.closed = True
        try:
            self._writer.close()
        finally:
            if self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)

    # -- what a checkpoint holds ---------------------------------------------------------

    def model_config(self) -> dict[str, Any]:
        """The config fields that shape the model, defaults filled from the recipe's schema."""
        recipe = type(self.ctx.recipe)
        props = getattr(recipe, "config_schema", {}).get("properties", {})
        config = self.ctx.spec.train.config
        return {k: config.get(k, props.get(k, {}).get("default"))
                for k in getattr(recipe, "model_fields", ())}

    def _check_compatible(self, path: Path) -> None:
        saved = _manifest(path).get("extra", {}).get("model_config", {})
        current = json.loads(json.dumps(self.model_config()))
        changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if changed:
            what = "; ".join(f"train.config.{k} was {saved.get(k)!r}, now {current.get(k)!r}"
                             for k in changed)
            raise checkpoint.Incompatible(
                f"cannot resume from {path.name}: the model changed ({what}); set "
                "checkpoint.resume: never, or use another checkpoint.volume")

    def _load(self, path: Path) -> None:
        import torch

        self._check_compatible(path)
        self.acc.load_state(str(path))
        mine = path / f"recipe-{self.acc.process_index}.pt"
        state = torch.load(mine if mine.is_file() else path / "recipe-0.pt", weights_only=True)
        self.ctx.recipe.load_state_dict(state)

    def _write(self, folder: Path, states: list[Any],
               write: Callable[[Path], None] | None = None) -> None:
        """Accelerate's part (`save_state`, or a snapshot's `write`), then the recipe's."""
        (write or self._save_state)(folder)
        self._add_recipe_states(folder, states)

    def _save_state(self, folder: Path) -> None:
        self.acc.save_state(str(folder))

    @staticmethod
    def _add_recipe_states(folder: Path, states: list[Any]) -> None:
        import torch

        for rank, state in enumerate(states):
            torch.save(state, folder / f"recipe-{rank}.pt")
        faults.point("written")

    # -- one process ---------------------------------------------------------------------

    def _find_and_load(self) -> Restored:
        found = checkpoint.latest_loadable(self.ctx.checkpoints, load=self._load, warn=_warn)
        return Restored(found.step, found.manifest.get("extra", {})) if found else Restored(0)

    def _save(self, step: int, states: list[Any], extra: dict[str, Any]) -> None:
        self._publish(step, lambda tmp: self._write(tmp, states), extra)

    def _publish(self, step: int, write: Callable[[Path], None], extra: dict[str, Any]) -> None:
        """Global rank 0 alone: write under a temp name, publish atomically, commit, then
        apply retention (so a failed deletion never costs the new checkpoint)."""
        root = self.ctx.checkpoints
        checkpoint.save(root, step, write, spec_hash=self.ctx.spec.hash, extra=extra)
        faults.point("published")
        self._mirror_logs()
        self.ctx.volume.commit()
        faults.point("committed")
        try:
            checkpoint.retain(root, step, self.ctx.spec.checkpoint.keep_last)
        except checkpoint.CheckpointError as exc:
            _warn(str(exc))

    def _mirror_logs(self) -> None:
        """Tracker files go to the volume with each checkpoint, in the same commit."""
        if self.ctx.log_mirror is not None and self.ctx.run_dir.is_dir():
            shutil.copytree(self.ctx.run_dir, self.ctx.log_mirror, dirs_exist_ok=True)


class DistributedCheckpointer(Checkpointer):
    """Many processes: every collective is reached by every rank, in the same order."""

    @property
    def _on_node0(self) -> bool:
        return self.acc.process_index == self.acc.local_process_index

    def _find_and_load(self) -> Restored:
        """Global rank 0 picks the checkpoint (verified); every rank loads that same one."""
        from accelerate.utils import broadcast_object_list

        choice: list[Any] = [None, 0]
        if self.acc.is_main_process:
            found = checkpoint.latest_loadable(self.ctx.checkpoints, load=self._check_compatible,
                                               warn=_warn)
            choice = [str(found.path), found.step] if found else [None, 0]
        broadcast_object_list(choice)
        if not choice[0]:
            return Restored(0)
        path = Path(choice[0])
        self._load(path)
        return Restored(int(choice[1]), _manifest(path).get("extra", {}))

    def _save(self, step: int, states: list[Any], extra: dict[str, Any]) -> None:
        """Every rank adds its part to one staging folder, then global rank 0 publishes it alone.

        The collectives all come first and every rank reaches each of them, so a failure on
        rank 0 while publishing cannot leave the others waiting: it is broadcast, and all raise.
        """
        from accelerate.utils import broadcast_object_list, gather_object

        states = gather_object(states)
        stage = self._staging_folder(step)
        self.acc.save_state(str(stage))  # node 0's ranks add their RNG state; others' is scratch
        self.acc.wait_for_everyone()
        outcome: list[Any] = [None]
        if self.acc.is_main_process:
            try:
                self._publish(step, lambda tmp: self._move_in(stage, tmp, states), extra)
            except Exception as exc:
                outcome[0] = str(exc)
        if not self._on_node0:
            shutil.rmtree(stage, ignore_errors=True)
        broadcast_object_list(outcome)
        if outcome[0] is not None:
            raise checkpoint.CheckpointError(outcome[0])

    def _staging_folder(self, step: int) -> Path:
        """Rank 0 makes one on the volume and tells the others; other nodes get local scratch."""
        from accelerate.utils import broadcast_object_list

        root = self.ctx.checkpoints
        where: list[Any] = [None]
        if self.acc.is_main_process:
            with contextlib.suppress(OSError):  # a full disk: None tells every rank
                root.mkdir(parents=True, exist_ok=True)
                where[0] = tempfile.mkdtemp(prefix=f".tmp-stage-{step:08d}-", dir=root)
        broadcast_object_list(where)
        if where[0] is None:
            raise checkpoint.CheckpointError(f"checkpoint at step {step} not written: cannot "
                                             "create a staging folder; earlier checkpoints are intact")
        return Path(where[0]) if self._on_node0 else Path(tempfile.mkdtemp(prefix="launch-scratch-"))

    def _move_in(self, stage: Path, tmp: Path, states: list[Any]) -> None:
        for item in stage.iterdir():
            os.replace(item, tmp / item.name)
        stage.rmdir()
        self._add_recipe_states(tmp, states)
