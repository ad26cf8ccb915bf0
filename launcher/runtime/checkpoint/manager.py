"""The checkpoint manager: what the loop calls to resume and to save, one process or many.

Public face (all the loop may use):

    resume(skip) -> Restored  the newest usable checkpoint, loaded; step 0 when none
    newest_step() -> int|None the newest complete checkpoint on the volume (not loaded)
    save(step, extra)         write, publish, mirror the logs, commit, then apply retention
    wait()                    return once every save handed over so far is committed
    close()                   wait, then refuse further saves (end of this loop's life)
    written, seconds          checkpoints written, seconds the caller was held up by them
    background                whether saves are written by the background writer

It owns the checkpoint work that needs torch and the Accelerator: what goes into one
(Accelerate's `save_state`, each rank's recipe state, a manifest `extra` naming the job, its
recipe, its resolved train config and the world size), loading, background saving, and the
distributed protocol (global rank 0 picks the checkpoint and every rank loads it; every rank
stages its part, rank 0 alone publishes and commits). It delegates the rest: whether a
checkpoint may be resumed from at all, and what changed since, to the pure resume policy
(`resume_policy.py`); setting aside, publishing, log mirroring, the commit with the lease's
heartbeat and retention to the publisher (`publisher.py`). Storage is the stdlib store in
`store.py`; durability is the volume's `commit()`.

Resuming takes two steps. Picking checks a checkpoint without changing anything: its files
against the manifest, then whether this job may resume from it at all (the same job and
recipe, the same world size, the same model config, for a pipeline the same prepared data,
recipe state of the same shapes); a
refusal is permanent (`Incompatible`). Loading then changes this process's state; if it
fails part-way (the recipe's `load_state_dict` raising after the model and optimizer were
restored, say), `LoadFailed` tells the caller to rebuild the recipe before it tries an
earlier checkpoint or starts fresh. After a load, optimizer hyperparameters are the ones
built from the spec (hparams.py), and the log names each config field and each other
`train.*` setting that changed. A manifest that is malformed (nested too deep, a field of
`extra` of the wrong type) is skipped with a warning, as a damaged checkpoint is; recipe state
that a weights-only load refuses stops the search as permanent (every checkpoint of it alike).

A run writes only after the checkpoint it started from. Its first save first moves every
checkpoint of a later step (all of them, when it started fresh) into the job's `set-aside/`
folder, so nothing it did not write is overwritten or deleted; and checks that the recipe's
state loads back through `torch.load(weights_only=True)`, the only way it is ever read, so
state no resume could load fails the run before any checkpoint of it is written.

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

import io
import os
import pickle
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.runtime import events, failures, faults
from launcher.runtime.checkpoint import hparams, resume_policy, store
from launcher.runtime.checkpoint.publisher import Publisher
from launcher.runtime.checkpoint.resume_policy import PLAIN, Refuse, Run, Skip
from launcher.runtime.checkpoint.writer import Writer
from launcher.runtime.failures import PermanentError, launchers_bug
from launcher.runtime.recipe import checks
from launcher.runtime.train.context import LoopContext


@dataclass(frozen=True)
class Restored:
    step: int  # 0: nothing was loaded
    extra: dict[str, Any] = field(default_factory=dict)  # the manifest's `extra` of the one loaded


class LoadFailed(Exception):
    """Loading checkpoint `step` changed this process's state, then failed: rebuild the recipe,
    then resume again with this step skipped."""

    def __init__(self, step: int) -> None:
        super().__init__(f"loading checkpoint step {step} failed part-way")
        self.step = step


def _to_cpu(value: Any) -> Any:
    if hasattr(value, "detach"):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _shapes(value: Any, where: str = "") -> dict[str, list[int]]:
    """The shape of every tensor in a nested state, by its path."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return {where or "(state)": list(value.shape)}
    items = value.items() if isinstance(value, dict) else enumerate(value) \
        if isinstance(value, (list, tuple)) else ()
    return {k: v for key, item in items for k, v in _shapes(item, f"{where}.{key}" if where
                                                            else str(key)).items()}


def _unpickling_cause(exc: BaseException) -> str:
    """What a weights-only load refused, in torch's words ("Unsupported global: GLOBAL x")."""
    found = re.search(r"WeightsUnpickler error: (.*?)(?: was not an allowed global|\.? Please|\n|$)",
                      str(exc))
    return found[1] if found else str(exc).splitlines()[0]


def reload_error(state: Any) -> str | None:
    """Why `state`, saved, would not load back through torch.load(weights_only=True), the only
    way a checkpoint's recipe state is read; None if it would."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    try:
        torch.load(buffer, weights_only=True)
    except pickle.UnpicklingError as exc:
        return _unpickling_cause(exc)
    return None


def _warn(message: str) -> None:
    events.log(f"warning: {message}")


def _extra(path: Path, step: int) -> dict[str, Any]:
    """The manifest's `extra` of a checkpoint that was picked (so checked) before."""
    extra = store.read_manifest(path, step).get("extra", {})
    return {} if resume_policy.malformed(extra) else extra


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
        # A pipeline's train and evaluate: the digest of prepare's data this run uses (None: no
        # prepared data), from `use_data`; each checkpoint records it, and one made on other
        # data is refused. Without a prepare stage, neither.
        self.checks_data = False
        self.data_digest: str | None = None
        self._copies: Any = None  # host buffers for background saves, made at the first one
        self._reloadable = False  # the recipe's state was seen to load back (at the first save)
        self.publisher = Publisher(ctx)  # commits, with the lease's heartbeat and the logs
        self._staging: Path | None = None

    def _background(self, setting: bool | str) -> bool:
        if setting is False:
            return False
        from launcher.runtime.checkpoint import snapshot

        if snapshot.supported(self.acc):
            return True
        if setting is True:
            _warn(f"checkpoint.async is true, but with {self.acc.num_processes} process(es) "
                  f"({self.acc.distributed_type}) checkpoints are written in the training loop")
        return False

    # -- public face -------------------------------------------------------------------

    def resume(self, skip: Collection[int] = ()) -> Restored:
        """Load the newest usable checkpoint not in `skip`; LoadFailed if loading it failed."""
        picked = self._pick(skip)
        if picked is None:
            events.log(resume_policy.nothing_loaded(len(store.top_level(self.ctx.checkpoints))))
            return Restored(0)
        path, step = picked
        error = self._agree(self._load(path))
        if error is not None:
            then = "the previous one" if store.earlier_than(self.ctx.checkpoints, step, skip) \
                else "a fresh start"
            _warn(f"checkpoint {path.name} skipped: loading it failed part-way ({error}); "
                  f"the recipe is rebuilt before {then}")
            raise LoadFailed(step)
        extra = _extra(path, step)
        self.publisher.started_from(step)
        events.log(f"resumed from {path.name} (after update {step} of {self.ctx.spec.train.steps})")
        run = self.run()
        for note in (resume_policy.config_note(path.name, extra, run),
                     resume_policy.train_note(path.name, extra, run)):
            if note is not None:
                events.log(note)
        return Restored(step, extra)

    def newest_step(self) -> int | None:
        newest = store.complete(self.ctx.checkpoints)
        return newest[0].step if newest else None

    def save(self, step: int, extra: dict[str, Any]) -> None:
        """Checkpoint the state after update `step`; `extra` (numbers, strings) goes into the
        manifest."""
        if self.closed:
            raise RuntimeError("the checkpoint manager is closed")
        started = time.perf_counter()
        self._writer.wait()  # one write in flight at most; one that failed raises here
        if not self._reloadable:
            self._check_reloadable()
        extra = {**extra, **self.identity(), "world_size": self.acc.num_processes}
        if self.background:
            self._save_later(step, extra, started)
        else:
            self._save(step, [_to_cpu(checks.recipe_state(self.ctx.recipe))], extra)
            self._written(step, started)
        self.seconds += time.perf_counter() - started

    def _check_reloadable(self) -> None:
        """Refuse, before the first checkpoint is written, recipe state that no resume could
        load: found at resume, it would cost every checkpoint of the run."""
        recipe = self.ctx.recipe
        error = self._agree(reload_error(_to_cpu(checks.recipe_state(recipe))))
        if error is not None:
            raise PermanentError(
                f"{checks.where(type(recipe).state_dict)}: {type(recipe).__name__}.state_dict() "
                f"holds what torch.load(weights_only=True) refuses ({error}), so no checkpoint of "
                f"it could ever be resumed; {PLAIN}")
        self._reloadable = True

    def _written(self, step: int, started: float, stall: float | None = None) -> None:
        self.written += 1
        seconds = time.perf_counter() - started
        events.emit("checkpoint", step=step, seconds=seconds,
                    stall=seconds if stall is None else stall)

    def _save_later(self, step: int, extra: dict[str, Any], started: float) -> None:
        """Copy now, in this thread; write, publish and commit on the writer thread."""
        from launcher.runtime.checkpoint import snapshot

        first = self._copies is None
        if first:
            self._copies = snapshot.HostCopies(pin=self.acc.device.type == "cuda")
            self._staging = Path(tempfile.mkdtemp(prefix="launch-snapshots-"))
        assert self._staging is not None
        # A copy, not a view: the recipe may change its tensors in place while this is written.
        states = [self._copies.copy(checks.recipe_state(self.ctx.recipe), ("recipe",))]
        snap = snapshot.take(self.acc, self._copies, self._staging)
        if first:
            events.log(f"checkpoints are written in the background; a copy of the state takes "
                       f"{self._copies.nbytes / 2**20:,.1f} MiB of host memory")
        stall = time.perf_counter() - started

        def write() -> None:
            try:
                self.publisher.publish(step, lambda tmp: self._write(tmp, step, states, snap.write), extra)
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

    def run(self) -> Run:
        """What this run is, for the resume policy: whose checkpoints it may load, what its own
        manifests record."""
        return Run.of(self.ctx.spec, type(self.ctx.recipe),
                      None if self.ctx.reads_only else self.acc.num_processes,
                      (self.checks_data, self.data_digest))

    def use_data(self, digest: str | None) -> None:
        """This run trains on prepare's data of `digest` (a pipeline's train and evaluate)."""
        self.checks_data, self.data_digest = True, digest

    def identity(self) -> dict[str, Any]:
        """What the manifest records to tell whose checkpoint it is and what it was made with."""
        return resume_policy.identity(self.run())

    # -- picking: checks that change nothing ------------------------------------------------

    def _pick(self, skip: Collection[int]) -> tuple[Path, int] | None:
        return self._pick_here(skip)

    def _pick_here(self, skip: Collection[int]) -> tuple[Path, int] | None:
        try:
            found = store.newest_usable(self.ctx.checkpoints, self._check, _warn, skip)
        except store.Incompatible as exc:
            raise PermanentError(str(exc)) from exc
        return (found.path, found.step) if found else None

    def _check(self, ckpt: store.Checkpoint) -> None:
        """Whether this job may resume from `ckpt` at all (the resume policy's verdict, then the
        recipe state's shapes); CheckpointError to skip it, Incompatible if never."""
        extra = ckpt.manifest.get("extra", {})
        run = self.run()
        verdict = resume_policy.judge(ckpt.path.name, ckpt.step, extra, run)
        if isinstance(verdict, Skip):
            raise store.CheckpointError(verdict.reason)  # skipped with a warning
        if isinstance(verdict, Refuse):
            raise store.Incompatible(verdict.reason)
        self._check_recipe_shapes(ckpt, extra, run)

    def _check_recipe_shapes(self, ckpt: store.Checkpoint, extra: dict[str, Any], run: Run) -> None:
        """The saved recipe state has the shapes this recipe's state has (resume_policy says
        what differing shapes mean)."""
        import torch

        mine = ckpt.path / f"recipe-{self.acc.process_index}.pt"
        try:
            saved = _shapes(torch.load(mine, weights_only=True))
        except pickle.UnpicklingError as exc:  # every checkpoint of this recipe alike: permanent
            raise store.Incompatible(resume_policy.unloadable(
                ckpt.path.name, _unpickling_cause(exc), type(self.ctx.recipe).__name__)) from exc
        try:
            current = _shapes(_to_cpu(checks.recipe_state(self.ctx.recipe)))
        except checks.ProtocolError as exc:  # no checkpoint could ever be resumed: say why
            raise store.Incompatible(str(exc)) from exc
        refusal = resume_policy.shapes_refusal(ckpt.path.name, saved, current, extra, run)
        if refusal is not None:
            raise store.Incompatible(refusal)

    # -- loading: changes this process's state ---------------------------------------------------

    def _load(self, path: Path) -> str | None:
        """Load `path` into the accelerator and the recipe; why it failed, or None."""
        import torch

        built = hparams.capture(self.ctx.recipe)
        try:
            self.acc.load_state(str(path))
            state = torch.load(path / f"recipe-{self.acc.process_index}.pt", weights_only=True)
            self.ctx.recipe.load_state_dict(state)
        except Exception as exc:
            where = checks.user_frame(exc.__traceback__, type(self.ctx.recipe))
            return f"{where + ': ' if where else ''}{type(exc).__name__}: {exc}"
        hparams.restore(built)
        return None

    def _agree(self, error: str | None) -> str | None:
        """One process: its own outcome is the outcome."""
        return error

    # -- saving --------------------------------------------------------------------------

    def _write(self, folder: Path, step: int, states: list[Any],
               write: Callable[[Path], None] | None = None) -> None:
        """Accelerate's part (`save_state`, or a snapshot's `write`), then the recipe's."""
        (write or self._save_state)(folder)
        self._add_recipe_states(folder, step, states)

    def _save_state(self, folder: Path) -> None:
        self.acc.save_state(str(folder))

    @staticmethod
    def _add_recipe_states(folder: Path, step: int, states: list[Any]) -> None:
        import torch

        for rank, state in enumerate(states):
            torch.save(state, folder / f"recipe-{rank}.pt")
        faults.point("written", step)

    def _save(self, step: int, states: list[Any], extra: dict[str, Any]) -> None:
        self.publisher.publish(step, lambda tmp: self._write(tmp, step, states), extra)


class DistributedCheckpointer(Checkpointer):
    """Many processes: every collective is reached by every rank, in the same order."""

    @property
    def _on_node0(self) -> bool:
        return self.acc.process_index == self.acc.local_process_index

    def _pick(self, skip: Collection[int]) -> tuple[Path, int] | None:
        """Global rank 0 picks the checkpoint (verified, checked); every rank gets its choice,
        or its failure (its class, errno and traceback kept), and finds it under its own mount
        (each node has its own)."""
        from accelerate.utils import broadcast_object_list

        choice: list[Any] = [0, None]
        error = None
        if self.acc.is_main_process:
            try:
                picked = self._pick_here(skip)
                choice = [picked[1] if picked else 0, None]
            except Exception as exc:  # any: the other ranks wait for the broadcast
                error, choice = exc, [0, _described(exc)]
        broadcast_object_list(choice)
        _raise_either(error, choice[1])
        step = int(choice[0])
        return (self.ctx.checkpoints / store.step_name(step), step) if step else None

    def _agree(self, error: str | None) -> str | None:
        """Every rank loaded or none did: the first rank's failure is everyone's."""
        from accelerate.utils import gather_object

        return next((e for e in gather_object([error]) if e is not None), None)

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
        error = None
        if self.acc.is_main_process:
            try:
                self.publisher.publish(step, lambda tmp: self._move_in(stage, tmp, step, states), extra)
            except Exception as exc:  # described with its kind: a full disk is permanent on every rank
                error, outcome[0] = exc, _described(exc)
        if not self._on_node0:
            shutil.rmtree(stage, ignore_errors=True)
        broadcast_object_list(outcome)
        _raise_either(error, outcome[0])

    def _staging_folder(self, step: int) -> Path:
        """Rank 0 makes one on the volume and tells the others; other nodes get local scratch."""
        from accelerate.utils import broadcast_object_list

        root = self.ctx.checkpoints
        where: list[Any] = [None, None]
        if self.acc.is_main_process:
            try:
                root.mkdir(parents=True, exist_ok=True)
                where[0] = tempfile.mkdtemp(prefix=f".tmp-stage-{step:08d}-", dir=root)
            except OSError as exc:  # a full disk: every rank is told why
                where[1] = _described(exc)
        broadcast_object_list(where)
        if where[0] is None:
            cause = failures.rebuilt(where[1])
            raise store.CheckpointError(f"checkpoint after update {step} not written: cannot "
                                        f"create a staging folder ({cause}); earlier "
                                        "checkpoints are intact") from cause
        return Path(where[0]) if self._on_node0 else Path(tempfile.mkdtemp(prefix="launch-scratch-"))

    def _move_in(self, stage: Path, tmp: Path, step: int, states: list[Any]) -> None:
        for item in stage.iterdir():
            os.replace(item, tmp / item.name)
        stage.rmdir()
        self._add_recipe_states(tmp, step, states)


def _described(exc: Exception) -> dict[str, Any]:
    return failures.describe(exc, bug=launchers_bug(exc))


def _raise_either(own: Exception | None, described: dict[str, Any] | None) -> None:
    """After a broadcast of rank 0's failure: rank 0 raises its own exception (type, errno,
    cause and traceback intact), every other rank the one rebuilt from its description."""
    if own is not None:
        raise own
    if described is not None:
        raise failures.rebuilt(described)
