"""How an attempt's end is classed, through the supervisor: a broken recipe protocol and any
error before the first update are permanent (never retried), naming the user's file and line;
SIGINT during start-up is a preemption; a changed learning rate takes effect on resume."""

from __future__ import annotations

import json
from pathlib import Path

from forkrun import run_forked
from runjob import probe_spec, write_spec

BROKEN = '''\
from probe_recipe import Probe


class Broken(Probe):
    def train_step(self, step):
        super().train_step(step)
        return 0.5
'''

FAILS_IN_SETUP = '''\
from probe_recipe import Probe


class FailsInSetup(Probe):
    def setup(self, accelerator):
        super().setup(accelerator)
        raise FileNotFoundError("data/train.bin")
'''


def _recipe(folder: Path, name: str, source: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(source)


def test_train_step_returning_a_float_is_permanent_and_names_the_line(tmp_path: Path) -> None:
    _recipe(tmp_path, "broken", BROKEN)
    spec = probe_spec(steps=3, train={"recipe": "broken:Broken"})
    run = run_forked(write_spec(tmp_path, spec))
    assert run.code == 1
    assert "attempts     1 (1: permanent)" in run.output  # not retried
    assert ("error        broken.py:5: Broken.train_step returned float in update 1; it must "
            "return a dict of metric names to numbers") in run.output


def test_an_error_before_the_first_update_is_permanent_and_names_the_line(tmp_path: Path) -> None:
    _recipe(tmp_path, "setup_fails", FAILS_IN_SETUP)
    spec = probe_spec(steps=3, train={"recipe": "setup_fails:FailsInSetup"})
    run = run_forked(write_spec(tmp_path, spec))
    assert run.code == 1
    assert "attempts     1 (1: permanent)" in run.output
    assert ("error        setup_fails.py:7: FileNotFoundError: data/train.bin (in stage 2, before "
            "the first update completed: not retried, a retry would fail the same way)") in run.output


def test_an_error_after_the_first_update_is_still_retried(tmp_path: Path) -> None:
    run = run_forked(write_spec(tmp_path, probe_spec(steps=6)), "kill:step:2")
    assert run.code == 0 and "attempts     2 (1: transient, 2: finished)" in run.output


def test_sigint_during_stage_1_is_a_preemption(tmp_path: Path) -> None:
    run = run_forked(write_spec(tmp_path, probe_spec(steps=3, retries=0)), "int:stage1:1")
    assert run.code == 0, run.output
    assert ("[launch] attempt 1: preempted (stopped on SIGINT before a checkpoint could be written; "
            "the restart resumes from the last commit)") in run.output
    assert "KeyboardInterrupt" not in run.output


def test_a_changed_learning_rate_takes_effect_on_resume(tmp_path: Path) -> None:
    first = run_forked(write_spec(tmp_path, probe_spec(steps=3, train={"config": {"lr": 0.05}})))
    assert first.code == 0, first.output
    run = run_forked(write_spec(tmp_path, probe_spec(steps=6, train={"config": {"lr": 0.01}})))
    assert run.code == 0, run.output
    assert ("train.config changed since step-00000003: lr 0.05 -> 0.01; the new values apply "
            "(the optimizer keeps its state, with the spec's hyperparameters)") in run.output
    rows = [json.loads(line) for line in (tmp_path / "probe-rank0.jsonl").read_text().splitlines()]
    assert [(r["step"], r["lr"]) for r in rows] == [(0, 0.05), (1, 0.05), (2, 0.05),
                                                    (3, 0.01), (4, 0.01), (5, 0.01)]
