"""A sweep's search as Optuna objects: sampler, pruner, and one distribution per parameter."""

from __future__ import annotations

import json
from typing import Any

import optuna

from launcher.spec.sweep_model import Parameter, Sweep

# The median rule judges a trial against at least this many others that reported at the same
# update (Optuna's default of 5 startup trials would never prune a small sweep).
MEDIAN_STARTUP_TRIALS = 2


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def encode(param: Parameter, value: Any) -> Any:
    """A listed value as Optuna stores it: itself when a scalar, else its JSON text."""
    return value if all(_scalar(v) for v in param.values) else json.dumps(value)


def decode(param: Parameter, stored: Any) -> Any:
    return stored if all(_scalar(v) for v in param.values) else json.loads(stored)


def distribution(param: Parameter) -> optuna.distributions.BaseDistribution:
    d = optuna.distributions
    if param.kind == "log_uniform":
        return d.FloatDistribution(float(param.low), float(param.high), log=True)  # type: ignore[arg-type]
    if param.kind == "uniform":
        return d.FloatDistribution(float(param.low), float(param.high), step=param.step)  # type: ignore[arg-type]
    if param.kind == "int":
        return d.IntDistribution(int(param.low), int(param.high), step=int(param.step or 1))  # type: ignore[arg-type]
    return d.CategoricalDistribution([encode(param, v) for v in param.values])


def space(sweep: Sweep) -> dict[str, optuna.distributions.BaseDistribution]:
    return {p.path: distribution(p) for p in sweep.parameters}


def sampler(sweep: Sweep, asked: int = 0) -> optuna.samplers.BaseSampler:
    """`asked`: trials the study holds already (a restart). A sampler's random state is not in
    the study, so a restarted one seeded as before would draw the first trials' parameters
    again: its seed moves on by the trials asked for."""
    seed = sweep.seed + asked
    if sweep.method == "grid":
        grid = {p.path: [encode(p, v) for v in p.grid_values() or ()] for p in sweep.parameters}
        return optuna.samplers.GridSampler(grid, seed=seed)
    if sweep.method == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def pruner(sweep: Sweep, steps: int, report_every: int) -> optuna.pruners.BasePruner:
    """`steps`: a trial's updates; `report_every`: its reporting cadence, in updates (the
    validation cadence, train.validate_every, where the job validates): Hyperband's smallest
    rung is one report."""
    if sweep.early_stop == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS)
    if sweep.early_stop == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=report_every, max_resource=steps)
    return optuna.pruners.NopPruner()


def params_of(sweep: Sweep, stored: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters by path, as the spec takes them (listed values decoded)."""
    return {p.path: decode(p, stored[p.path]) if p.kind in ("choice", "grid") else stored[p.path]
            for p in sweep.parameters}
