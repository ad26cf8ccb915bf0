"""The sweep's picture: the objective over updates for every trial (pruned ones marked where
they stopped), and each trial's objective against the most important parameter (Optuna's
fANOVA importance; the only parameter, when there is one). matplotlib (the `report` extra) is
imported here only, and only when a picture is asked for."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from launcher.spec.sweep_model import Sweep

WIDTH_IN, HEIGHT_IN, DPI = 12, 4.5, 100


def most_important(study: optuna.Study, sweep: Sweep) -> str:
    """The parameter that explains most of the objective (the first one until there are enough
    finished trials to tell)."""
    paths = [p.path for p in sweep.parameters]
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if len(paths) == 1 or len(complete) < 3:
        return paths[0]
    try:
        importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError):  # too few distinct values to tell
        return paths[0]
    return next(iter(importances), paths[0])


def _x(value: Any, choices: list[Any] | None) -> float:
    return float(choices.index(value)) if choices is not None else float(value)


def draw(study: optuna.Study, sweep: Sweep, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only: never a window
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    over, against = fig.subplots(1, 2)
    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    best = study.best_trial.number if any(t.state == TrialState.COMPLETE for t in trials) else None
    for t in trials:
        steps = sorted(t.intermediate_values)
        values = [t.intermediate_values[s] for s in steps]
        pruned = t.state == TrialState.PRUNED
        style = {"color": "tab:red", "linewidth": 2.5, "zorder": 3} if t.number == best else \
            {"color": "0.6", "linestyle": "--", "linewidth": 1} if pruned else {"linewidth": 1.2}
        over.plot(steps, values, label=f"t{t.number:03d}" + (" (best)" if t.number == best else ""), **style)
        if pruned:
            over.plot(steps[-1], values[-1], marker="x", color="black", markersize=7, zorder=4)
    over.set_xlabel("update")
    over.set_ylabel(sweep.metric)
    over.set_title(f"{sweep.metric} over updates (x: pruned)")
    if sweep.direction == "min" and all(v > 0 for t in trials for v in t.intermediate_values.values()):
        over.set_yscale("log")
    if len(trials) <= 12:
        over.legend(fontsize="small", ncol=2)
    name = most_important(study, sweep)
    param = next(p for p in sweep.parameters if p.path == name)
    choices = [str(v) for v in param.values] if param.kind in ("choice", "grid") else None
    for state, color, marker in ((TrialState.COMPLETE, "tab:blue", "o"), (TrialState.PRUNED, "0.6", "x")):
        points = [(t.user_attrs.get("params", {}).get(name), t) for t in trials if t.state == state]
        points = [(v if choices is None else str(v), t) for v, t in points if v is not None]
        ys = [t.value if state == TrialState.COMPLETE else t.intermediate_values[max(t.intermediate_values)]
              for _, t in points]
        against.scatter([_x(v, choices) for v, _ in points], ys, c=color, marker=marker,
                        label="complete" if state == TrialState.COMPLETE else "pruned (last report)")
    if choices is not None:
        against.set_xticks(range(len(choices)), choices)
    elif param.kind == "log_uniform":
        against.set_xscale("log")
    against.set_xlabel(name + ("" if len(sweep.parameters) == 1 else " (most important)"))
    against.set_ylabel(sweep.metric)
    against.set_title(f"{sweep.metric} against {name.rsplit('.', 1)[-1]}")
    against.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def can_draw() -> bool:
    """Whether matplotlib is installed, found without importing it."""
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        return False
