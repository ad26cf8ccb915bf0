"""The checkpoint manager: what the loop calls to resume and to save, one process or many.

Public face (all the loop may use):

    resume(skip) -> Restored  the newest usable checkpoint, loaded; step 0 when none
    newest_step() -> int|None the newest complete checkpoint on the volume (not loaded)
    save(step, extra)         write, publish, mirror the logs, commit, then apply retention
    wait()                    return once every save handed over so far is committed
    close()                   wait, then refuse further saves (end of this loop's life)
    written, seconds          checkpoints written, seconds the caller was held up by them
    background                whether saves are written by the background writer

It owns the checkpoint work: what goes into one (Accelerate's `save_state`, each rank's
recipe state, a manifest `extra` naming the job, its recipe, its resolved train config and
the world size), the checks on resume, retention, and the distributed protocol (global
rank 0 picks the checkpoint and every rank loads it; every rank stages its part, rank 0
alone publishes and commits). Storage is the stdlib store in `store.py`; durability is
the volume's `commit()`, and each commit carries a heartbeat of the job's lease.

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

import dataclasses
import io
import json
import math
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
from launcher.runtime.checkpoint import hparams, store
from launcher.runtime.checkpoint.writer import Writer
from launcher.runtime.failures import PermanentError, launchers_bug
from launcher.runtime.pipeline import stages
from launcher.runtime.recipe import checks
from launcher.runtime.train.context import LoopContext

NEVER = "set checkpoint.resume: never, or use another checkpoint.volume"
# A job name reused for another job: its folder holds the old job's checkpoints.
FRESH = ("start this job from step 0 with --fresh (with --local; it moves them aside), "
         "or rename it, or " + NEVER)
# What a checkpoint's recipe state may hold: all that torch.load(weights_only=True) reads back.
PLAIN = ("keep only tensors, numbers, strings, and lists, tuples and dicts of them in it (a "
         "NumPy array as torch.from_numpy(a), a random generator's state as a torch.Generator's)")


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


def _changes(saved: dict[str, Any], current: dict[str, Any], keys: Collection[str]) -> list[str]:
    return [f"{k} {json.dumps(saved.get(k))} -> {json.dumps(current.get(k))}"
            for k in sorted(keys) if saved.get(k) != current.get(k)]


# What each field of a manifest's `extra` must be, where present; None is allowed for all.
_EXTRA_TYPES: dict[str, tuple[type, ...]] = {
    "job": (str,), "recipe": (str,), "world_size": (int,), "train_config": (dict,),
    "model_config": (dict,), "train": (dict,), "data_digest": (str,), "best_return": (int, float),
    "objective": (dict,)}


def _malformed(extra: dict[str, Any]) -> str | None:
    """Why a manifest's `extra` cannot be trusted (a field of the wrong type), or None."""
    for key, types in _EXTRA_TYPES.items():
        value = extra.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            return f"{store.MANIFEST} is malformed: extra.{key} is {json.dumps(value)[:40]}"
    return None


def _extra(path: Path, step: int) -> dict[str, Any]:
    """The manifest's `extra` of a checkpoint that was picked (so checked) before."""
    extra = store.read_manifest(path, step).get("extra", {})
    return {} if _malformed(extra) else extra


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
        self.start_step = 0  # the checkpoint this run resumed from (0: none): it writes after it
        self._cleared = False  # checkpoints after start_step were set aside (at the first publish)
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
            present = store.top_level(self.ctx.checkpoints)
            events.log(f"no checkpoint could be loaded ({len(present)} skipped, see above): starting "
                       "fresh; they are set aside at the first save, none overwritten or deleted"
                       if present else "no checkpoint: starting fresh")
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
        self.start_step = step
        if self.ctx.pick == "best":
            recorded = extra.get("objective") or {}
            events.log(f"the best checkpoint by the objective: {path.name} ({recorded.get('name')} "
                       f"{recorded['value']:.4g})" if recorded.get("value") is not None else
                       f"no checkpoint records an objective value: the newest, {path.name}")
        events.log(f"resumed from {path.name} (after update {step} of {self.ctx.spec.train.steps})")
        self._log_config_changes(path.name, extra)
        self._log_train_changes(path.name, extra)
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
                self._publish(step, lambda tmp: self._write(tmp, step, states, snap.write), extra)
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

    def train_config(self) -> dict[str, Any]:
        """train.config as the recipe sees it: defaults from its schema filled in."""
        props = getattr(type(self.ctx.recipe), "config_schema", {}).get("properties", {})
        defaults = {k: p["default"] for k, p in props.items() if isinstance(p, dict) and "default" in p}
        return json.loads(json.dumps({**defaults, **self.ctx.spec.train.config}))

    def model_config(self) -> dict[str, Any]:
        """The config fields that shape the model."""
        config = self.train_config()
        return {k: config.get(k) for k in getattr(type(self.ctx.recipe), "model_fields", ())}

    def use_data(self, digest: str | None) -> None:
        """This run trains on prepare's data of `digest` (a pipeline's train and evaluate)."""
        self.checks_data, self.data_digest = True, digest

    def identity(self) -> dict[str, Any]:
        """What the manifest records to tell whose checkpoint it is and what it was made with."""
        spec = self.ctx.spec
        data = {"data_digest": self.data_digest} if self.checks_data else {}
        return {"job": spec.name, "recipe": spec.train.recipe, "train_config": self.train_config(),
                "model_config": self.model_config(), "train": self.train_settings(), **data}

    def train_settings(self) -> dict[str, Any]:
        """The `train` section but its recipe (checked) and config (reported on its own)."""
        train = self.ctx.spec.train
        return json.loads(json.dumps({f.name: getattr(train, f.name) for f in dataclasses.fields(train)
                                      if f.name not in ("recipe", "config")}))

    # -- picking: checks that change nothing ------------------------------------------------

    def _pick(self, skip: Collection[int]) -> tuple[Path, int] | None:
        return self._pick_here(skip)

    def _pick_here(self, skip: Collection[int]) -> tuple[Path, int] | None:
        try:
            found = store.newest_usable(self.ctx.checkpoints, self._check, _warn, skip,
                                        best=self.ctx.pick == "best")
        except store.Incompatible as exc:
            raise PermanentError(str(exc)) from exc
        return (found.path, found.step) if found else None

    def _check(self, ckpt: store.Checkpoint) -> None:
        """Whether this job may resume from `ckpt` at all; Incompatible if not."""
        extra = ckpt.manifest.get("extra", {})
        if (malformed := _malformed(extra)) is not None:
            raise store.CheckpointError(malformed)  # skipped with a warning
        name = f"cannot resume from {ckpt.path.name}"
        spec = self.ctx.spec
        for key, mine in (("job", spec.name), ("recipe", spec.train.recipe)):
            theirs = extra.get(key)  # absent: made before manifests named them
            if theirs is not None and theirs != mine:
                raise store.Incompatible(f"{name}: it belongs to {key} {theirs!r}, not {mine!r}; "
                                         f"a checkpoint of another job is never loaded: {FRESH}")
        if not self.ctx.reads_only:
            self._check_world_size(name, int(extra.get("world_size", 1)))
        changed = _changes(extra.get("model_config", {}), self.model_config(),
                           set(extra.get("model_config", {})) | set(self.model_config()))
        if changed:
            raise store.Incompatible(
                f"{name}: the model changed (train.config: {'; '.join(changed)}); {NEVER}")
        if self.checks_data and extra.get("data_digest") != self.data_digest:
            raise store.Incompatible(stages.stale_data(ckpt.step, extra.get("data_digest"),
                                                       self.data_digest))
        self._check_recipe_shapes(ckpt, name, extra)

    def _check_world_size(self, name: str, saved: int) -> None:
        if saved != self.acc.num_processes:
            raise store.Incompatible(
                f"{name}: it was written by {saved} processes and this run has "
                f"{self.acc.num_processes}; each process resumes its own recipe state (its "
                f"environments, its random streams), so the process count (compute.gpu_count x "
                f"compute.nodes, or --processes) must stay {saved}, or {NEVER}")

    def _check_recipe_shapes(self, ckpt: store.Checkpoint, name: str, extra: dict[str, Any]) -> None:
        """The saved recipe state has the shapes this recipe's state has: if not, its config
        changed (num_envs, say) and loading it would fail half-way or, worse, not at all.
        Tensors empty (the recipe fills them as it trains) are not compared."""
        import torch

        mine = ckpt.path / f"recipe-{self.acc.process_index}.pt"
        try:
            saved = _shapes(torch.load(mine, weights_only=True))
        except pickle.UnpicklingError as exc:  # every checkpoint of this recipe alike: permanent
            raise store.Incompatible(
                f"{name}: its recipe state holds what torch.load(weights_only=True) refuses "
                f"({_unpickling_cause(exc)}), and so does every checkpoint written with it; in "
                f"{type(self.ctx.recipe).__name__}.state_dict(), {PLAIN}; then start afresh "
                f"(--fresh with --local, or checkpoint.resume: never: either sets these "
                f"checkpoints aside, deleting none)") from exc
        try:
            current = _shapes(_to_cpu(checks.recipe_state(self.ctx.recipe)))
        except checks.ProtocolError as exc:  # no checkpoint could ever be resumed: say why
            raise store.Incompatible(str(exc)) from exc
        # A tensor empty until training fills it (an epoch's sample order, say) has no shape
        # to compare, saved or now.
        differ = [f"{k}: saved {saved[k]}, now {current[k]}" for k in sorted(saved)
                  if k in current and saved[k] != current[k]
                  and math.prod(saved[k]) != 0 and math.prod(current[k]) != 0]
        if differ:
            config = self.train_config()
            changed = _changes(extra.get("train_config", {}), config, config)
            why = f"train.config changed ({'; '.join(changed)})" if changed else \
                "the recipe or its config changed"
            raise store.Incompatible(f"{name}: the recipe's state has other shapes "
                                     f"({'; '.join(differ[:3])}): {why}; {NEVER}")

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

    def _log_config_changes(self, name: str, extra: dict[str, Any]) -> None:
        saved = extra.get("train_config")
        if saved is None:
            return
        current = self.train_config()
        changed = _changes(saved, current, set(saved) | set(current))
        if changed:
            events.log(f"train.config changed since {name}: {', '.join(changed)}; the new values "
                       "apply (the optimizer keeps its state, with the spec's hyperparameters)")

    def _log_train_changes(self, name: str, extra: dict[str, Any]) -> None:
        saved = extra.get("train")
        if saved is None:
            return  # made before manifests recorded them
        current = self.train_settings()
        changed = _changes(saved, current, set(saved) | set(current))
        if not changed:
            return
        # The checkpoint brings its own RNG states: a new seed shows only in a fresh start.
        seed = "; the random streams continue from the checkpoint, so the new seed applies " \
            "to a fresh start only" if saved.get("seed") != current.get("seed") else ""
        events.log(f"train changed since {name}: {', '.join(changed)}; the new values apply{seed}")

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
        self._publish(step, lambda tmp: self._write(tmp, step, states), extra)

    def _publish(self, step: int, write: Callable[[Path], None], extra: dict[str, Any]) -> None:
        """Global rank 0 alone: write under a temp name, publish atomically, commit, then
        apply retention (so a failed deletion never costs the new checkpoint)."""
        root = self.ctx.checkpoints
        if not self._cleared:
            self._set_aside_newer(root)
        store.save(root, step, write, spec_hash=self.ctx.spec.hash, extra=extra)
        faults.point("published", step)
        self._mirror_logs()
        self._commit()
        faults.point("committed", step)
        try:
            store.retain(root, step, self.ctx.spec.checkpoint.keep_last,
                         self.ctx.spec.checkpoint.keep_best)
        except store.CheckpointError as exc:
            _warn(str(exc))

    def _set_aside_newer(self, root: Path) -> None:
        """Checkpoints after the one this run started from (all of them, when it started
        fresh) are an earlier run's, or ones that failed to load: this run would overwrite
        them step by step and its retention delete them. Moved aside instead, under the lease."""
        moved = store.set_aside(root, self.start_step)
        self._cleared = True
        if moved is not None:
            folder, names = moved
            since = f"update {self.start_step}" if self.start_step else "scratch"
            # Named from the volume's top: the mount differs between containers (and locally, is
            # the attempt's working copy).
            where = f"{self.ctx.spec.checkpoint.volume}:{folder.relative_to(root.parent).as_posix()}"
            _warn(f"this run trains from {since}: {', '.join(names)} (not written by it) set aside "
                  f"in {where}, none overwritten or deleted")

    def _commit(self) -> None:
        """Heartbeat the job's lease with each commit, then commit."""
        if self.ctx.lease is not None:
            self.ctx.lease.beat()
        self.ctx.volume.commit()

    def _mirror_logs(self) -> None:
        """Tracker files go to the volume with each checkpoint, in the same commit."""
        if self.ctx.log_mirror is not None and self.ctx.run_dir.is_dir():
            shutil.copytree(self.ctx.run_dir, self.ctx.log_mirror, dirs_exist_ok=True,
                            copy_function=copy_as_new_file)


def copy_as_new_file(source: str, target: str) -> None:
    """Copy to a new file and rename it over the old one: a file on the volume is never
    rewritten in place (a working copy shares unchanged files with the committed state)."""
    tmp = f"{target}.tmp-{os.getpid()}"
    shutil.copy2(source, tmp)
    os.replace(tmp, target)


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
                self._publish(step, lambda tmp: self._move_in(stage, tmp, step, states), extra)
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
