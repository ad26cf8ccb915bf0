"""Sweep specs: `launch check` and `--dry-run` check every parameter against the job's and the
recipe's schemas, located at the parameter; the plan shows the space and the worst cases; and
neither imports torch or Optuna."""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path

import pytest
from runjob import HEAVY, fresh_cli

ROOT = Path(__file__).resolve().parent.parent

GOOD = """\
version: 1
extends: digits.yaml
sweep:
  method: grid
  budget_usd: 3
  objective: {metric: loss, direction: min}
  parameters:
    train.config.learning_rate: {grid: [1.0e-2, 1.0e-3]}
    train.config.channels: {choice: [8, 16]}
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository-like folder with the digits job and a Dockerfile; the working directory."""
    shutil.copy(ROOT / "jobs/digits.yaml", tmp_path / "digits.yaml")
    shutil.copy(ROOT / "Dockerfile.cuda", tmp_path / "Dockerfile.cuda")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def sweep_file(folder: Path, body: str, name: str = "sweep.yaml") -> str:
    (folder / name).write_text(textwrap.dedent(body), "utf-8")
    return name


def test_a_good_sweep_checks(folder: Path, launch) -> None:
    assert launch("check", sweep_file(folder, GOOD)) == (0, "", "1 spec ok\n")


BAD = [
    ("train.sed: {grid: [0, 1]}",
     "sweep.yaml:8:5: $.sweep.parameters.train.sed: value 0: $.train: unknown key 'sed'; did you mean 'seed'?"),
    ("train.config.learning_rate: {grid: [-0.1, 0.1]}",
     "sweep.yaml:8:5: $.sweep.parameters.train.config.learning_rate: value -0.1: -0.1 is less than or "
     "equal to the minimum of 0"),
    ("train.config.channels: {int: [0, 4]}",
     "sweep.yaml:8:5: $.sweep.parameters.train.config.channels: value 0: 0 is less than the minimum of 1"),
    ("train.config.width: {choice: [1, 2]}",
     "sweep.yaml:8:5: $.sweep.parameters.train.config.width: value 1: $.train.config: unknown key 'width'"),
    ("train.steps: {choice: [ten]}",
     "sweep.yaml:8:5: $.sweep.parameters.train.steps: value \"ten\": 'ten' is not of type 'integer'"),
    ("compute.gpu: {choice: [L4, T4]}",
     "sweep.yaml:8:5: $.sweep.parameters.compute.gpu: cannot be swept: every trial runs on the same "
     "hardware, so that one worst case prices them all"),
    ("stages.prepare.config.test_fraction: {choice: [0.1, 0.2]}",
     "sweep.yaml:8:5: $.sweep.parameters.stages.prepare.config.test_fraction: cannot be swept: prepare "
     "runs once for the whole sweep, and every trial reads its data"),
    ("train.config.learning_rate: {log_uniform: [1.0e-2, 1.0e-3]}",
     "sweep.yaml:8:47: $.sweep.parameters.train.config.learning_rate.log_uniform: the low bound 0.01 must "
     "be below the high bound 0.001"),
    ("train.config.learning_rate: {uniform: [0.001, 0.01]}",
     "sweep.yaml:8:34: $.sweep.parameters.train.config.learning_rate.uniform: method grid needs a finite "
     "list of values: use grid or choice (or int), or method random or tpe for a uniform range"),
    ("train.config.channels: {int: [1, 1000000]}",
     "sweep.yaml:8:29: $.sweep.parameters.train.config.channels.int: method grid would list 1000000 "
     "values; at most 10000: use a step, or method random or tpe"),
    ("train.config.channels: {choice: [8], step: 2}",
     "sweep.yaml:8:42: $.sweep.parameters.train.config.channels.step: step goes with int or uniform, not choice"),
]


@pytest.mark.parametrize("parameter, error", BAD, ids=[b[0].split(":")[0] + str(i) for i, b in enumerate(BAD)])
def test_a_bad_parameter_is_located_at_it(folder: Path, launch, parameter: str, error: str) -> None:
    body = GOOD.replace("    train.config.learning_rate: {grid: [1.0e-2, 1.0e-3]}\n"
                        "    train.config.channels: {choice: [8, 16]}\n", f"    {parameter}\n")
    if "log_uniform" in parameter:  # a range: method random (grid refuses it, as another case shows)
        body = body.replace("method: grid", "method: random")
    assert launch("check", sweep_file(folder, body)) == (1, "", f"{error}\n1 spec checked, 1 with problems\n")


def test_grid_values_with_tpe_are_refused(folder: Path, launch) -> None:
    body = GOOD.replace("method: grid", "method: tpe")
    assert launch("check", sweep_file(folder, body)) == (1, "", (
        "sweep.yaml:8:34: $.sweep.parameters.train.config.learning_rate.grid: grid values are swept by "
        "method grid; with tpe, use choice\n1 spec checked, 1 with problems\n"))


def test_more_grid_trials_than_combinations_are_refused(folder: Path, launch) -> None:
    body = GOOD.replace("method: grid", "method: grid\n  trials: 5")
    assert launch("check", sweep_file(folder, body)) == (1, "", (
        "sweep.yaml:5:11: $.sweep.trials: the grid has 4 combinations, so 5 trials would repeat some; "
        "leave trials out to run each once\n1 spec checked, 1 with problems\n"))


def test_the_shape_of_a_parameter_is_the_schema_s(folder: Path, launch) -> None:
    body = GOOD.replace("{choice: [8, 16]}", "{choice: [8, 16], grid: [1]}")
    result = launch("check", sweep_file(folder, body))
    assert result.code == 1
    assert result.err.startswith("sweep.yaml:9:28: $.sweep.parameters.train.config.channels: ")


def test_a_sweep_needs_an_objective_when_the_recipe_has_none(folder: Path, launch) -> None:
    (folder / "plain.py").write_text("class Plain:\n    config_schema = {'type': 'object'}\n", "utf-8")
    sweep_file(folder, "version: 1\nname: plain\nimage: {code: local}\n"
                       "train: {recipe: plain:Plain}\n", "plain.yaml")
    body = ("version: 1\nextends: plain.yaml\nsweep:\n  parameters:\n"
            "    train.seed: {choice: [0, 1]}\n")
    assert launch("check", sweep_file(folder, body)) == (1, "", (
        "sweep.yaml:3:1: $.sweep: the recipe plain:Plain declares no objective (a class attribute "
        "objective = (\"metric\", \"min\" or \"max\")); set sweep.objective: {metric: NAME, direction: "
        "min|max}\n1 spec checked, 1 with problems\n"))


def test_the_recipe_s_objective_is_read_from_its_source(folder: Path) -> None:
    from launcher.spec.refs import use_root
    from launcher.spec.sweep import recipe_objective

    (folder / "scored.py").write_text("import torch\nclass Scored:\n    objective = ('val/acc', 'max')\n")
    use_root(folder)
    assert recipe_objective("scored:Scored") == ("val/acc", "max")
    assert "scored" not in sys.modules  # read, never imported (it imports torch)


def test_the_plan_shows_the_space_and_the_worst_cases(folder: Path, launch) -> None:
    result = launch("--dry-run", "--use-local-code", sweep_file(folder, GOOD))
    assert result.code == 0, result.err
    lines = result.err.splitlines()
    assert "sweep       grid, 4 trials, 1 at once; objective loss (min, the sweep's); early stop none" in lines
    assert "  train.config.learning_rate  grid of 2: 0.01, 0.001" in lines
    assert "  train.config.channels       choice of 2: 8, 16" in lines
    assert "  space     4 combinations" in lines
    # train: L4 at $0.80/h, 30 min, 3 attempts = $1.20 a trial; evaluate (T4, 10 min, 2 attempts)
    # $0.20 once; prepare is CPU only.
    assert any(line.startswith("sweep cost  worst case one trial $1.20, whole sweep $4.99 (4 trials "
                               "+ the stages run once); estimates from the plan's prices (") for line in lines)
    assert "  budget    $3.00: covers the worst case of 2 of 4 trials; no trial starts when the spend " \
           "so far and the running trials' worst case would pass it" in lines


def test_a_job_budget_shows_in_the_plan(folder: Path, launch) -> None:
    name = sweep_file(folder, "version: 1\nextends: digits.yaml\nbudget_usd: 5\n", "budgeted.yaml")
    result = launch("--dry-run", "--use-local-code", name)
    assert result.code == 0, result.err
    assert any(line.startswith("budget      $5.00 for the run, against its worst case one launch "
                               "$1.40; estimates from the plan's prices (") for line in result.err.splitlines())


def test_check_and_dry_run_of_a_sweep_import_neither_torch_nor_optuna(folder: Path) -> None:
    name = sweep_file(folder, GOOD)
    for args in (["check", name], ["--dry-run", "--use-local-code", name],
                 ["runs", name, "--local", "--volumes-dir", str(folder / "volumes")]):
        assert fresh_cli(args, folder, (*HEAVY, "optuna")) == (0, set()), args


def test_without_optuna_a_sweep_says_so_in_one_line(folder: Path, launch, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed: find_spec fails
    assert launch(sweep_file(folder, GOOD), "--local") == (1, "", (
        "a sweep needs Optuna, which is not installed; install it with: pip install "
        "'modal-launcher[sweep]'\n"))


def test_a_sweep_on_modal_says_it_runs_locally_for_now(folder: Path, launch) -> None:
    result = launch(sweep_file(folder, GOOD))
    assert result.code == 1
    assert result.err == ("sweep.yaml: sweeps run with --local for now; the coordinator on Modal (a "
                          "CPU function that `launch` spawns) is not built yet\n")


def test_options_a_sweep_does_not_take_are_usage_errors(folder: Path, launch) -> None:
    result = launch(sweep_file(folder, GOOD), "--local", "--fresh")
    assert result.code == 2
    assert "are not for sweeps (a sweep resumes; give it another name to start over)" in result.err
