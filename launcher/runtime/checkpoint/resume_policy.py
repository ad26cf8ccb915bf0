"""The resume policy: whether this run may resume from a checkpoint, decided from its manifest.

Pure: a manifest's `extra` and what this run is (`Run`, built from the spec and the recipe
class) in, a verdict out; it reads no file, loads nothing and imports no torch, so every rule
is testable on plain dicts. The manager (`manager.py`) asks it, in this order:

    resumes(asked, setting)        whether a run looks for a checkpoint at all
    judge(name, step, extra, run)  Usable, Skip (damaged: an earlier one may do) or Refuse
                                   (permanent: every checkpoint of the job alike)
    shapes_refusal(...)            the recipe state's saved shapes against this recipe's
    config_note / train_note       after a load: what changed since the checkpoint, for the log
    identity(run)                  what a manifest records, for the next run's `judge`

A refusal says how to go on (`FRESH`, `NEVER`): a checkpoint is never overwritten or deleted
to make room for a run that cannot use it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from launcher.runtime.checkpoint.store import MANIFEST
from launcher.runtime.pipeline import stages
from launcher.spec.model import JobSpec

NEVER = "set checkpoint.resume: never, or use another checkpoint.volume"
# A job name reused for another job: its folder holds the old job's checkpoints.
FRESH = ("start this job from step 0 with --fresh (with --local; it moves them aside), "
         "or rename it, or " + NEVER)
# What a checkpoint's recipe state may hold: all that torch.load(weights_only=True) reads back.
PLAIN = ("keep only tensors, numbers, strings, and lists, tuples and dicts of them in it (a "
         "NumPy array as torch.from_numpy(a), a random generator's state as a torch.Generator's)")

# What each field of a manifest's `extra` must be, where present; None is allowed for all.
_EXTRA_TYPES: dict[str, tuple[type, ...]] = {
    "job": (str,), "recipe": (str,), "world_size": (int,), "train_config": (dict,),
    "model_config": (dict,), "train": (dict,), "data_digest": (str,), "best_return": (int, float)}


@dataclass(frozen=True)
class Run:
    """What this run is, as each checkpoint's manifest is judged against it."""

    job: str
    recipe: str
    train_config: dict[str, Any]  # train.config as the recipe sees it (schema defaults filled in)
    model_config: dict[str, Any]  # the fields of it that shape the model
    train: dict[str, Any]  # the `train` section but its recipe and config
    world_size: int | None  # None: it only reads (evaluate), whatever process count wrote it
    data_digest: str | None = None  # prepare's data this run uses (a pipeline's train/evaluate)
    checks_data: bool = False  # whether it has prepared data to compare at all

    @classmethod
    def of(cls, spec: JobSpec, recipe_cls: type, world_size: int | None,
           data: tuple[bool, str | None] = (False, None)) -> Run:
        config = train_config(spec, recipe_cls)
        return cls(job=spec.name, recipe=spec.train.recipe, train_config=config,
                   model_config={k: config.get(k) for k in getattr(recipe_cls, "model_fields", ())},
                   train=train_settings(spec), world_size=world_size,
                   checks_data=data[0], data_digest=data[1])


@dataclass(frozen=True)
class Usable:
    """This run may load it."""


@dataclass(frozen=True)
class Skip:
    """Damaged (a manifest that cannot be trusted): skipped with a warning; an earlier may do."""

    reason: str


@dataclass(frozen=True)
class Refuse:
    """This job may never resume from it, nor from any earlier one: permanent."""

    reason: str


Verdict = Usable | Skip | Refuse


def resumes(asked: bool, setting: str) -> bool:
    """Whether a run looks for a checkpoint: asked to (not --fresh), and checkpoint.resume auto."""
    return asked and setting == "auto"


def train_config(spec: JobSpec, recipe_cls: type) -> dict[str, Any]:
    """train.config as the recipe sees it: defaults from its schema filled in."""
    props = getattr(recipe_cls, "config_schema", {}).get("properties", {})
    defaults = {k: p["default"] for k, p in props.items() if isinstance(p, dict) and "default" in p}
    return json.loads(json.dumps({**defaults, **spec.train.config}))


def train_settings(spec: JobSpec) -> dict[str, Any]:
    """The `train` section but its recipe (checked) and config (reported on its own)."""
    train = spec.train
    return json.loads(json.dumps({f.name: getattr(train, f.name) for f in dataclasses.fields(train)
                                  if f.name not in ("recipe", "config")}))


def identity(run: Run) -> dict[str, Any]:
    """What the manifest records to tell whose checkpoint it is and what it was made with."""
    data = {"data_digest": run.data_digest} if run.checks_data else {}
    return {"job": run.job, "recipe": run.recipe, "train_config": run.train_config,
            "model_config": run.model_config, "train": run.train, **data}


def changes(saved: dict[str, Any], current: dict[str, Any], keys: Collection[str]) -> list[str]:
    return [f"{k} {json.dumps(saved.get(k))} -> {json.dumps(current.get(k))}"
            for k in sorted(keys) if saved.get(k) != current.get(k)]


def malformed(extra: dict[str, Any]) -> str | None:
    """Why a manifest's `extra` cannot be trusted (a field of the wrong type), or None."""
    for key, types in _EXTRA_TYPES.items():
        value = extra.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            return f"{MANIFEST} is malformed: extra.{key} is {json.dumps(value)[:40]}"
    return None


def judge(name: str, step: int, extra: dict[str, Any], run: Run) -> Verdict:
    """Whether `run` may resume from the checkpoint `name` of `step` whose manifest holds
    `extra`: the same job and recipe, the same world size (unless it only reads), the same
    model config, for a pipeline the same prepared data. Absent fields (manifests made before
    they were recorded) pass."""
    if (why := malformed(extra)) is not None:
        return Skip(why)
    refused = f"cannot resume from {name}"
    for key, mine in (("job", run.job), ("recipe", run.recipe)):
        theirs = extra.get(key)
        if theirs is not None and theirs != mine:
            return Refuse(f"{refused}: it belongs to {key} {theirs!r}, not {mine!r}; "
                          f"a checkpoint of another job is never loaded: {FRESH}")
    saved = int(extra.get("world_size", 1))
    if run.world_size is not None and saved != run.world_size:
        return Refuse(
            f"{refused}: it was written by {saved} processes and this run has "
            f"{run.world_size}; each process resumes its own recipe state (its "
            f"environments, its random streams), so the process count (compute.gpu_count x "
            f"compute.nodes, or --processes) must stay {saved}, or {NEVER}")
    model = extra.get("model_config", {})
    changed = changes(model, run.model_config, set(model) | set(run.model_config))
    if changed:
        return Refuse(f"{refused}: the model changed (train.config: {'; '.join(changed)}); {NEVER}")
    if run.checks_data and extra.get("data_digest") != run.data_digest:
        return Refuse(stages.stale_data(step, extra.get("data_digest"), run.data_digest))
    return Usable()


def shapes_refusal(name: str, saved: dict[str, list[int]], current: dict[str, list[int]],
                   extra: dict[str, Any], run: Run) -> str | None:
    """Why the saved recipe state (its tensors' shapes by path) cannot load into this recipe's:
    its config changed (num_envs, say) and loading it would fail half-way or, worse, not at all.
    A tensor empty until training fills it (an epoch's sample order, say) has no shape to
    compare, saved or now. None: the shapes agree."""
    differ = [f"{k}: saved {saved[k]}, now {current[k]}" for k in sorted(saved)
              if k in current and saved[k] != current[k]
              and math.prod(saved[k]) != 0 and math.prod(current[k]) != 0]
    if not differ:
        return None
    changed = changes(extra.get("train_config", {}), run.train_config, run.train_config)
    why = f"train.config changed ({'; '.join(changed)})" if changed else \
        "the recipe or its config changed"
    return (f"cannot resume from {name}: the recipe's state has other shapes "
            f"({'; '.join(differ[:3])}): {why}; {NEVER}")


def unloadable(name: str, cause: str, recipe_name: str) -> str:
    """Why a checkpoint whose recipe state a weights-only load refuses is refused: permanent,
    since every checkpoint written with that recipe holds the same."""
    return (f"cannot resume from {name}: its recipe state holds what torch.load(weights_only=True) "
            f"refuses ({cause}), and so does every checkpoint written with it; in "
            f"{recipe_name}.state_dict(), {PLAIN}; then start afresh "
            f"(--fresh with --local, or checkpoint.resume: never: either sets these "
            f"checkpoints aside, deleting none)")


def config_note(name: str, extra: dict[str, Any], run: Run) -> str | None:
    """After a load: the train.config fields changed since checkpoint `name`, for the log."""
    saved = extra.get("train_config")
    if saved is None:
        return None
    changed = changes(saved, run.train_config, set(saved) | set(run.train_config))
    if not changed:
        return None
    return (f"train.config changed since {name}: {', '.join(changed)}; the new values "
            "apply (the optimizer keeps its state, with the spec's hyperparameters)")


def train_note(name: str, extra: dict[str, Any], run: Run) -> str | None:
    """After a load: the other `train.*` settings changed since checkpoint `name`, for the log."""
    saved = extra.get("train")
    if saved is None:
        return None  # made before manifests recorded them
    changed = changes(saved, run.train, set(saved) | set(run.train))
    if not changed:
        return None
    # The checkpoint brings its own RNG states: a new seed shows only in a fresh start.
    seed = "; the random streams continue from the checkpoint, so the new seed applies " \
        "to a fresh start only" if saved.get("seed") != run.train.get("seed") else ""
    return f"train changed since {name}: {', '.join(changed)}; the new values apply{seed}"


def nothing_loaded(present: int) -> str:
    """The log line of a resume that found no checkpoint to load, `present` of them skipped."""
    if not present:
        return "no checkpoint: starting fresh"
    return (f"no checkpoint could be loaded ({present} skipped, see above): starting "
            "fresh; they are set aside at the first save, none overwritten or deleted")

