"""What the recipe says matters: its objective, the metrics its progress line shows.

A recipe declares them as class attributes beside `config_schema`:

    objective = ("val/accuracy", "max")   # a metric it returns (train_step or validate), min | max
    progress = ("train/loss",)            # shown on the progress line besides the objective

Both are optional. Without `objective` nothing is "best" (summaries say none was declared,
`checkpoint.keep_best` and `stages.evaluate.checkpoint: best` have nothing to go by); without
`progress` the progress line shows every scalar the recipe returned. `Tracker` keeps the
objective's last and best values as the loop sees them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from launcher.runtime.recipe.checks import ProtocolError, where

MODES = ("min", "max")


@dataclass(frozen=True)
class Objective:
    name: str
    mode: str  # min | max

    def better(self, value: float, than: float | None) -> bool:
        """Whether `value` beats `than` (None: nothing yet); a NaN never does."""
        if math.isnan(value):
            return False
        if than is None or math.isnan(than):
            return True
        return value < than if self.mode == "min" else value > than


def of(recipe_cls: type) -> Objective | None:
    """The recipe class's declared objective, or None; a ProtocolError naming the class when
    the attribute is not a (metric name, "min" | "max") pair."""
    declared = getattr(recipe_cls, "objective", None)
    if declared is None:
        return None
    if not (isinstance(declared, (tuple, list)) and len(declared) == 2
            and isinstance(declared[0], str) and declared[0] and declared[1] in MODES):
        raise ProtocolError(f"{where(recipe_cls)}: {recipe_cls.__name__}.objective is "
                            f"{declared!r}; it must be a pair (metric name, \"min\" or \"max\"), "
                            "e.g. objective = (\"val/loss\", \"min\")")
    return Objective(declared[0], declared[1])


def progress_names(recipe_cls: type) -> tuple[str, ...] | None:
    """The metric names the progress line shows (None: every scalar); a ProtocolError when the
    attribute is not a sequence of names."""
    declared = getattr(recipe_cls, "progress", None)
    if declared is None:
        return None
    if isinstance(declared, str) or not isinstance(declared, (tuple, list)) \
            or not all(isinstance(n, str) and n for n in declared):
        raise ProtocolError(f"{where(recipe_cls)}: {recipe_cls.__name__}.progress is "
                            f"{declared!r}; it must be a tuple of metric names, e.g. "
                            "progress = (\"train/loss\", \"val/loss\")")
    return tuple(declared)


def check(recipe_cls: type) -> None:
    """Stage 1: the attributes are well formed, and `validate`, if any, is a method."""
    of(recipe_cls)
    progress_names(recipe_cls)
    validate = getattr(recipe_cls, "validate", None)
    if validate is not None and not callable(validate):
        raise ProtocolError(f"{where(recipe_cls)}: {recipe_cls.__name__}.validate is "
                            f"{type(validate).__name__}; it must be a method returning a dict of "
                            "metric names to numbers")


class Tracker:
    """The objective's last and best values, across the whole run (a resume brings the best)."""

    def __init__(self, objective: Objective | None) -> None:
        self.objective = objective
        self.last: float | None = None
        self.best: float | None = None
        self.at: int | None = None  # the update the last value was measured after

    def see(self, metrics: dict[str, float], step: int) -> None:
        if self.objective is None or self.objective.name not in metrics:
            return
        value = metrics[self.objective.name]
        self.last, self.at = value, step
        if self.objective.better(value, self.best):
            self.best = value

    def restore(self, saved: Any) -> None:
        """From a manifest's `extra.objective`, when it is the same objective."""
        if (self.objective is not None and isinstance(saved, dict)
                and saved.get("name") == self.objective.name and saved.get("mode") == self.objective.mode):
            best, last, at = saved.get("best"), saved.get("value"), saved.get("at")
            self.best = float(best) if isinstance(best, (int, float)) else None
            self.last = float(last) if isinstance(last, (int, float)) else None
            self.at = at if isinstance(at, int) else None

    def record(self) -> dict[str, Any] | None:
        """What a checkpoint's manifest and a result say: name, mode, value (the last one
        measured), at (the update it was measured after), best (the best so far in the run).
        A checkpoint's value is the newest at or before its step: validate at the checkpoint
        cadence (train.validate_every dividing checkpoint.every_steps) for each to have its own."""
        if self.objective is None:
            return None
        return {"name": self.objective.name, "mode": self.objective.mode,
                "value": _plain(self.last), "at": self.at, "best": _plain(self.best)}


def _plain(value: float | None) -> float | None:
    """JSON has no NaN: a NaN is written as null."""
    return None if value is None or math.isnan(value) else value


def number(value: float) -> str:
    """A metric, compactly: 0.9134, 312.5, 1.2e-05, 40000."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.4g}"


def progress_line(metrics: dict[str, float], tracker: Tracker, names: tuple[str, ...] | None) -> str:
    """`val/accuracy 0.95 (best 0.97), train/loss 0.12, ...`: the objective first, then the
    metrics the recipe named (default: every one it returned), in the order given."""
    parts = []
    objective = tracker.objective
    if objective is not None and objective.name in metrics:
        best = f" (best {number(tracker.best)})" if tracker.best is not None else ""
        parts.append(f"{objective.name} {number(metrics[objective.name])}{best}")
    shown = names if names is not None else tuple(metrics)
    parts += [f"{name} {number(metrics[name])}" for name in shown
              if name in metrics and (objective is None or name != objective.name)]
    return ", ".join(parts)
