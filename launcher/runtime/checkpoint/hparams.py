"""On resume, optimizer hyperparameters come from the spec; the optimizer's state from the checkpoint.

`accelerator.load_state` restores each optimizer whole: its moments, and also the settings of
each param group (lr, eps, betas, weight_decay, ...) as they were when the checkpoint was
written, and a scheduler's `base_lrs`. A spec changed between runs (a lower learning rate,
say) would silently not take effect. So the freshly built recipe's settings are taken before
loading and put back after it (`capture`, then `restore`).

With a scheduler driving the learning rate (a param group with `initial_lr`), the current lr
is the schedule's factor times the base: it is rescaled by new base / old base, so the
schedule keeps its place. Unchanged settings are left exactly as loaded.

The optimizers and schedulers are found among the recipe's attributes (and in lists, tuples
and dicts held there), where the recipe protocol asks a recipe to keep them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

LR, INITIAL_LR = "lr", "initial_lr"


@dataclass
class Captured:
    optimizers: list[tuple[Any, list[dict[str, Any]]]]  # each with its groups' settings
    schedulers: list[tuple[Any, list[float]]]  # each with its base_lrs


def _held(recipe: Any) -> Iterator[Any]:
    for value in vars(recipe).values():
        if isinstance(value, dict):
            yield from value.values()
        elif isinstance(value, (list, tuple)):
            yield from value
        else:
            yield value


def capture(recipe: Any) -> Captured:
    """The settings of the recipe's optimizers and schedulers as built from the spec."""
    import torch

    optimizers, schedulers, seen = [], [], set()
    for obj in _held(recipe):
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.optim.Optimizer):
            groups = [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
                      for g in obj.param_groups]
            optimizers.append((obj, groups))
        scheduler = getattr(obj, "scheduler", obj)  # Accelerate wraps schedulers
        if isinstance(getattr(scheduler, "base_lrs", None), list):
            schedulers.append((scheduler, list(scheduler.base_lrs)))
    return Captured(optimizers, schedulers)


def restore(captured: Captured) -> None:
    """Put the captured settings back after a checkpoint was loaded."""
    for optimizer, groups in captured.optimizers:
        if len(groups) != len(optimizer.param_groups):
            continue  # another model; the checkpoint's compatibility check speaks for it
        for group, fresh in zip(optimizer.param_groups, groups):
            _restore_group(group, fresh)
    for scheduler, base_lrs in captured.schedulers:
        scheduler.base_lrs = list(base_lrs)


def _restore_group(group: dict[str, Any], fresh: dict[str, Any]) -> None:
    loaded_base = group.get(INITIAL_LR)
    for key, value in fresh.items():
        if key == LR and INITIAL_LR in fresh and loaded_base:
            if fresh[INITIAL_LR] != loaded_base:
                group[LR] = group[LR] * (fresh[INITIAL_LR] / loaded_base)
        elif key != LR or INITIAL_LR not in fresh:
            group[key] = copy.deepcopy(value)  # an unchanged value is the same value again
