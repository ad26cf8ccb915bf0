"""A sweep as Optuna objects (samplers, pruners, distributions), and its picture from a study:
drawn when matplotlib is there, one line when it is not."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest

from launcher.commands.sweep_run import draw_picture
from launcher.runtime.sweep.search import space
from launcher.spec.sweep_model import Parameter, Sweep

SWEEP = Sweep(method="random", trials=4, parallel=1, budget_usd=None, early_stop="median", seed=0,
              metric="loss", direction="min", objective_from="sweep",
              parameters=(Parameter("train.config.learning_rate", "log_uniform", 1e-4, 1e-1),
                          Parameter("train.config.channels", "choice", values=(4, 8))))


def a_study() -> optuna.Study:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    for n in range(4):
        trial = study.ask(space(SWEEP))
        trial.set_user_attr("params", dict(trial.params))
        for step in (10, 20, 30)[: 1 if n == 3 else 3]:
            trial.report(1.0 / (step * (n + 1)), step)
        if n == 3:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, 0.01 * (n + 1))
    return study


def test_the_picture_is_drawn(tmp_path: Path) -> None:
    line = draw_picture(a_study(), SWEEP, tmp_path / "sweep.png")
    assert line == f"picture: {tmp_path / 'sweep.png'}"
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_the_sweep_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert draw_picture(a_study(), SWEEP, tmp_path / "sweep.png") == (
        "no picture: matplotlib is not installed (pip install 'modal-launcher[report]')")
    assert not (tmp_path / "sweep.png").exists()


def test_the_search_is_optuna_s_own_samplers_pruners_and_distributions() -> None:
    from dataclasses import replace

    from launcher.runtime.sweep import search

    d = optuna.distributions
    grid = replace(SWEEP, method="grid", parameters=(Parameter("train.seed", "int", 0, 4, 2),
                                                     Parameter("x.hidden", "choice", values=([64], [64, 64]))))
    assert isinstance(search.sampler(grid), optuna.samplers.GridSampler)
    assert isinstance(search.sampler(replace(SWEEP, method="tpe")), optuna.samplers.TPESampler)
    assert isinstance(search.sampler(SWEEP), optuna.samplers.RandomSampler)
    assert isinstance(search.pruner(SWEEP, 200, 20), optuna.pruners.MedianPruner)
    assert isinstance(search.pruner(replace(SWEEP, early_stop="hyperband"), 200, 20), optuna.pruners.HyperbandPruner)
    assert isinstance(search.pruner(replace(SWEEP, early_stop="none"), 200, 20), optuna.pruners.NopPruner)
    assert search.space(SWEEP) == {"train.config.learning_rate": d.FloatDistribution(1e-4, 1e-1, log=True),
                                   "train.config.channels": d.CategoricalDistribution([4, 8])}
    hidden = grid.parameters[1]  # lists are stored as JSON text and come back as lists
    assert search.distribution(hidden) == d.CategoricalDistribution(["[64]", "[64, 64]"])
    assert search.params_of(grid, {"train.seed": 2, "x.hidden": "[64, 64]"}) == \
        {"train.seed": 2, "x.hidden": [64, 64]}
    assert list(grid.parameters[0].grid_values()) == [0, 2, 4]


def test_the_pruners_resource_is_the_validation_cadence(tmp_path: Path) -> None:
    """Hyperband's smallest rung is one validation (train.validate_every), not one log line."""
    from dataclasses import replace
    from types import SimpleNamespace

    from launcher.commands.sweep_run import search_study
    from launcher.runtime.sweep import search
    from launcher.runtime.sweep.journal import StudyStore

    def rung(validate_every: int | None) -> int:
        train = SimpleNamespace(steps=200, log_every=10, validate_every=validate_every)
        folder = tmp_path / str(validate_every)
        store = StudyStore(folder / "own", folder / "volume")
        study = search_study(store, SimpleNamespace(name="s", train=train),
                             replace(SWEEP, early_stop="hyperband"), search)
        return study.pruner._min_resource

    assert rung(40) == 40
    assert rung(None) == 10  # a job that does not validate reports at its logging cadence
