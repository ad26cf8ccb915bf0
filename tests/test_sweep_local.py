"""Sweeps end to end here: `launch SWEEP.yaml --local` over the digits job (prepare once, the
trials, evaluate on the best), with each trial's worker forked (tests/fault/forkrun.py); pruning
that stops trials gracefully; a coordinator killed mid-sweep that resumes; the budget."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from launcher.cli import main
from launcher.commands import sweep_run
from launcher.runtime.sweep.budget import Budget

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fault"))
import forkrun  # noqa: E402  (torch imported once, inherited by every forked worker)

JOB_OVERRIDES = {"snapshot": "none", "train": {"steps": 30, "log_every": 10, "tracker": "none"},
                 "checkpoint": {"every_steps": 10, "keep_last": 2}, "retries": {"max_retries": 0}}


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(ROOT / "jobs/digits.yaml", tmp_path / "digits.yaml")
    monkeypatch.chdir(tmp_path)
    real = sweep_run.sweep
    monkeypatch.setattr(sweep_run, "sweep", lambda job, sets, local, options: real(
        job, sets, local, replace(options, spawn=forkrun._spawn)))
    return tmp_path


def write_sweep(folder: Path, sweep: dict, **job: object) -> str:
    body = {"version": 1, "extends": "digits.yaml", **JOB_OVERRIDES, **job, "sweep": sweep}
    (folder / "sweep.yaml").write_text(yaml.safe_dump(body, sort_keys=False), "utf-8")
    return "sweep.yaml"


def launch(folder: Path, spec: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
        code = main([spec, "--local", "--volumes-dir", str(folder / "volumes")])
    return code, out.getvalue()


def trial_records(folder: Path) -> dict[str, dict]:
    volume = folder / "volumes" / "digits"
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(volume.glob("digits-t*/trial.json"))}


def checkpoint_steps(folder: Path, job: str) -> list[int]:
    found = (folder / "volumes" / "digits" / job).glob("step-*")
    return sorted(int(p.name.removeprefix("step-")) for p in found if p.name[5:].isdigit())


def table(output: str) -> list[list[str]]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("trial "))
    rows = []
    for line in lines[start + 1:]:
        if not line[:1].isdigit():
            break
        rows.append(line.split())
    return rows


GRID = {"method": "grid", "parallel": 2, "objective": {"metric": "loss", "direction": "min"},
        "parameters": {"train.config.learning_rate": {"grid": [0.01, 0.003]},
                       "train.config.channels": {"choice": [4, 8]}}}


def test_a_grid_sweep_runs_every_combination_once(folder: Path) -> None:
    code, output = launch(folder, write_sweep(folder, GRID))
    assert code == 0, output
    records = trial_records(folder)
    assert sorted(records) == ["digits-t000", "digits-t001", "digits-t002", "digits-t003"]
    combos = {(r["params"]["train.config.learning_rate"], r["params"]["train.config.channels"])
              for r in records.values()}
    assert combos == {(0.01, 4), (0.01, 8), (0.003, 4), (0.003, 8)}
    assert [row[1] for row in table(output)] == ["complete"] * 4
    assert all(row[3] == "30" for row in table(output))  # every trial ran its 30 updates
    # prepare ran once, in the sweep's folder; each trial reads that very data (hard links)
    assert output.count("prepare: running once for the sweep") == 1
    data = folder / "volumes/digits/digits/data/digits.pt"
    assert all((folder / "volumes/digits" / job / "data/digits.pt").stat().st_ino == data.stat().st_ino
               for job in records)
    # evaluate once, on the best trial; its parameters written as a spec that extends the job
    assert output.count("[sweep] evaluate on trial ") == 1
    best = yaml.safe_load((folder / "digits.best.yaml").read_text())
    best_row = min(table(output), key=lambda row: float(row[2]))
    assert best["extends"] == "digits.yaml" and "sweep" not in best
    best_params = records[f"digits-t{int(best_row[0]):03d}"]["params"]
    assert {f"train.config.{k}": v for k, v in best["train"]["config"].items()} == best_params
    assert best["train"]["steps"] == 30  # the sweep file's own settings stand
    picture = Path(re.search(r"^\[sweep\] picture: (.+)$", output, re.MULTILINE)[1])
    assert picture.read_bytes()[:4] == b"\x89PNG"
    check_code, _ = launch_check(folder, "digits.best.yaml")
    assert check_code == 0


def launch_check(folder: Path, spec: str) -> tuple[int, str]:
    shutil.copy(ROOT / "Dockerfile.cuda", folder / "Dockerfile.cuda")
    out = io.StringIO()
    with contextlib.redirect_stderr(out):
        code = main(["check", spec])
    return code, out.getvalue()


RANDOM = {"method": "random", "trials": 3, "seed": 1, "objective": {"metric": "loss", "direction": "min"},
          "parameters": {"train.config.learning_rate": {"log_uniform": [0.001, 0.02]},
                         "train.config.hidden": {"int": [16, 64], "step": 16}}}


def test_a_random_sweep_draws_in_range_and_a_rerun_repeats_no_trial(folder: Path) -> None:
    spec = write_sweep(folder, RANDOM)
    code, output = launch(folder, spec)
    assert code == 0, output
    records = trial_records(folder)
    assert len(records) == 3
    for record in records.values():
        assert 0.001 <= record["params"]["train.config.learning_rate"] <= 0.02
        assert record["params"]["train.config.hidden"] in (16, 32, 48, 64)
    assert len({r["params"]["train.config.learning_rate"] for r in records.values()}) == 3
    again_code, again = launch(folder, spec)
    assert again_code == 0, again
    assert "resuming the sweep: 3 trials ended before the restart stand, 0 that were running" in again
    assert not re.search(r"^\[sweep\] trial \d+ \(digits-t\d+\): train\.", again, re.MULTILINE)  # none started
    assert trial_records(folder) == records
    assert [row[1] for row in table(again)] == ["complete"] * 3


PRUNE = {"method": "grid", "seed": 3, "early_stop": "median",
         "objective": {"metric": "loss", "direction": "min"},
         "parameters": {"train.config.learning_rate": {"grid": [0.01, 0.005, 1.0e-6, 1.0e-7]}}}


def test_pruned_trials_stop_gracefully_with_a_committed_checkpoint(folder: Path) -> None:
    code, output = launch(folder, write_sweep(folder, PRUNE, train={"steps": 60, "log_every": 10,
                                                                    "tracker": "none"}))
    assert code == 0, output
    rows = table(output)
    pruned = [row for row in rows if row[1] == "pruned"]
    assert pruned, output
    for row in pruned:
        job = f"digits-t{int(row[0]):03d}"
        reached = int(row[3])
        assert f"trial {int(row[0])} ({job}): pruned at update {reached}" in output
        steps = checkpoint_steps(folder, job)
        # stopped as a preemption stops a run: a final checkpoint after the pruned report,
        # committed, short of the trial's 60 updates
        assert steps and reached <= steps[-1] < 60, (job, steps)
    assert all(row[1] in ("complete", "pruned") for row in rows)


def test_a_killed_coordinator_resumes_without_losing_or_repeating_a_trial(folder: Path) -> None:
    spec = write_sweep(folder, {**GRID, "parallel": 1}, train={"steps": 60, "log_every": 10, "tracker": "none"})
    journal = folder / "volumes/digits/digits/sweep/journal.log"
    pid = os.fork()
    if pid == 0:  # the coordinator, killed below as a preemption kills it (no chance to clean up)
        code = 70
        try:
            code, _ = launch(folder, spec)
        finally:
            os._exit(code)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # until trial 1 has a committed checkpoint
            if journal.is_file() and checkpoint_steps(folder, "digits-t001"):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the sweep never reached trial 1")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert not (folder / "volumes/digits/digits-t002").exists()
    code, output = launch(folder, spec)
    assert code == 0, output
    assert "resuming the sweep: 1 trials ended before the restart stand, 1 that were running resume" in output
    assert "trial 1 (digits-t001): resumed after the restart" in output
    assert "resumed from step-" in output
    assert "trial 0 (digits-t000):" not in output.split("summary:")[0]  # finished: not rerun
    rows = table(output)
    assert [row[0] for row in rows] == ["0", "1", "2", "3"]  # none lost, none twice
    assert [row[1] for row in rows] == ["complete"] * 4
    assert sorted(trial_records(folder)) == [f"digits-t00{n}" for n in range(4)]


def test_a_budget_below_one_trial_starts_none(folder: Path) -> None:
    # one trial's worst case: L4 at $0.80/h for 30 min = $0.40 (no retries); evaluate's $0.20 is
    # kept for the end
    code, output = launch(folder, write_sweep(folder, {**GRID, "budget_usd": 0.5}))
    assert code == 1, output
    assert ("[sweep] budget $0.50: no new trial, since the spend so far ($0.00) with the worst case of "
            "the running trials and of one more ($0.40) would pass it (estimates from the plan's "
            "prices)") in output
    assert trial_records(folder) == {}


def test_the_budget_holds_the_running_trials_worst_case_back() -> None:
    budget = Budget(limit_usd=0.8, per_hour_usd=3.6, trial_worst_usd=0.4, reserved_usd=0.1)
    assert budget.spent(100) == pytest.approx(0.1)
    assert budget.allows(0, [])  # 0.4 for the new trial + 0.1 kept for evaluate
    assert not budget.allows(0, [0.0])  # a running trial's whole worst case is still ahead
    assert not budget.allows(0, [300.0])  # 0.3 spent + 0.1 ahead: still its worst case
    assert budget.allows(100, [])  # a trial that ended after 0.1: 0.1 + 0.4 + 0.1
    assert budget.allows(300, [])  # 0.8: exactly the budget
    assert not budget.allows(301, [])
    assert Budget(None, 3.6, 0.4).allows(10 ** 9, [0.0] * 100)  # no budget


def test_a_changed_search_is_refused_where_the_earlier_one_is_kept(folder: Path) -> None:
    spec = write_sweep(folder, {**RANDOM, "trials": 1})
    assert launch(folder, spec)[0] == 0
    changed = {**RANDOM, "trials": 1, "parameters": {"train.config.channels": {"choice": [4, 8]}}}
    code, output = launch(folder, write_sweep(folder, changed))
    assert code == 1
    assert output.endswith("sweep.yaml: the sweep's folder on the volume holds a sweep with other "
                           "settings (parameters); give the sweep another name: to resume the "
                           "earlier one, undo the change\n")
    more = launch(folder, write_sweep(folder, {**RANDOM, "trials": 2}))  # extended: resumes
    assert more[0] == 0 and len(trial_records(folder)) == 2, more[1]
    first, second = (r["params"] for r in trial_records(folder).values())
    assert first != second  # the restarted sampler draws on, not the first trial's again


def test_trials_report_the_recipe_s_objective_at_each_validation(folder: Path) -> None:
    """No sweep objective: digits' own (val/accuracy, max); the pruner judges trials at the
    validation cadence (every 20 updates), not at every log line (every 10)."""
    sweep = {key: value for key, value in PRUNE.items() if key != "objective"}
    code, output = launch(folder, write_sweep(folder, sweep, train={
        "steps": 60, "log_every": 10, "validate_every": 20, "tracker": "none"}))
    assert code == 0, output
    reports = [int(n) for n in re.findall(r"pruned at update (\d+) \(val/accuracy", output)]
    assert reports, output
    assert all(n % 20 == 0 for n in reports), reports
    rows = table(output)
    complete = [float(row[2]) for row in rows if row[1] == "complete"]
    assert complete and all(0.0 <= value <= 1.0 for value in complete)  # accuracies, not losses
    assert re.search(r"^best: trial \d+ \(digits-t\d+\), val/accuracy ", output, re.MULTILINE)


def test_each_trial_is_a_run_whose_record_names_its_sweep_and_ends_pruned_when_pruned(folder: Path) -> None:
    from launcher.runtime.runs.record import RunRecord

    code, output = launch(folder, write_sweep(folder, PRUNE, train={"steps": 60, "log_every": 10,
                                                                    "tracker": "none"}))
    assert code == 0, output
    states = {f"digits-t{int(row[0]):03d}": row[1] for row in table(output)}
    assert "pruned" in states.values(), output
    volume = folder / "volumes" / "digits"
    for job, state in states.items():
        found = sorted((volume / job / "runs").glob("*/run.json"))
        assert len(found) == 1, (job, found)
        record = RunRecord.parse(found[0].read_text())
        assert record.sweep is not None and record.sweep["name"] == "digits"
        assert record.sweep["trial"] == int(job[-3:])
        assert record.status == ("pruned" if state == "pruned" else "finished"), (job, record.status)
        if state == "pruned":  # its final checkpoint committed, and in the record
            assert record.newest_step == checkpoint_steps(folder, job)[-1]


def test_the_sweep_view_lists_each_trial_from_its_run(folder: Path) -> None:
    spec = write_sweep(folder, PRUNE, train={"steps": 60, "log_every": 10, "tracker": "none"})
    code, output = launch(folder, spec)
    assert code == 0, output
    states = {int(row[0]): row[1] for row in table(output)}
    where = ["--local", "--volumes-dir", str(folder / "volumes")]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["runs", spec, "--json", *where]) == 0
    rows = json.loads(out.getvalue())
    assert [r["trial"] for r in rows] == sorted(states)
    assert {r["trial"]: r["state"] for r in rows} == states  # complete / pruned, as the sweep said
    for r in rows:
        # the sweep's objective (train loss here), not the recipe's, from the run's metrics history
        assert r["job"] == f"digits-t{r['trial']:03d}" and r["objective"] == "loss"
        grid = PRUNE["parameters"]["train.config.learning_rate"]["grid"]
        assert list(r["params"]) == ["train.config.learning_rate"]
        assert r["params"]["train.config.learning_rate"] in grid
        assert r["updates"] == 60 if r["state"] == "complete" else 0 < r["updates"] < 60
        assert r["cost_usd"] is not None and r["best"] is not None
    assert any(r["state"] == "pruned" for r in rows)
    assert sorted({r["params"]["train.config.learning_rate"] for r in rows}) == sorted(grid)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(["runs", spec, *where]) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:5] == ["TRIAL", "STATE", "BEST", "UPDATES", "COST"]
    assert [line.split()[1] for line in lines[1:]] == [states[n] for n in sorted(states)]
