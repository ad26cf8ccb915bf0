"""What the recipe says matters (issue 19): validate(), its objective, the best checkpoints, and
a summary that counts the whole run. Runs go through the CLI with forked workers
(runjob.launch_forked); the recipe is tests/recipes/scored_recipe.py, which has no environment
and reports only namespaced metrics.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from runjob import RECIPES, checkpoints, launch_forked, launch_local, write_spec

from launcher.runtime.checkpoint import store
from launcher.runtime.recipe import objective
from launcher.runtime.recipe.checks import ProtocolError, metrics
from launcher.runtime.train import history

SCORES = {"3": 0.9, "6": 0.2, "9": 0.5}  # the best checkpoint is step 3


def scored_spec(folder: Path, steps: int = 9, config: dict[str, Any] | None = None,
                train: dict[str, Any] | None = None, checkpoint: dict[str, Any] | None = None,
                stages: dict[str, Any] | None = None, retries: int = 0) -> Path:
    body: dict[str, Any] = {
        "name": "scored",
        "retries": {"max_retries": retries, "initial_delay": "0s"},
        "checkpoint": {"volume": "vol", "every_steps": 3, "keep_last": 3, "async": False,
                       **(checkpoint or {})},
        "train": {"recipe": "scored_recipe:Scored", "steps": steps, "log_every": 1,
                  "tracker": "none", "validate_every": 3, "config": {"scores": SCORES, **(config or {})},
                  **(train or {})},
    }
    if stages:
        body["stages"] = stages
    path = write_spec(folder, body)
    shutil.copy(RECIPES / "scored_recipe.py", folder / "scored_recipe.py")
    return path


def job_folder(run_volume: Path) -> Path:
    return run_volume / "vol" / "scored"


def validated_after(folder: Path) -> list[int]:
    lines = (folder / "validate.jsonl").read_text().splitlines()
    return [json.loads(line)["after"] for line in lines]


def test_a_recipe_with_only_namespaced_metrics_shows_its_own_everywhere(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = launch_forked(scored_spec(tmp_path, train={"tracker": "tensorboard"}))
    assert run.code == 0, run.output
    # The progress line: the objective first with its best, then every other metric returned.
    assert "update 3 of 9: val/score 0.9 (best 0.9), train/loss" in run.output
    assert "update 6 of 9: val/score 0.2 (best 0.9), train/loss" in run.output
    assert re.search(r"update 4 of 9: train/loss [\d.e-]+, train/lr 0.01\n", run.output)
    for ppo in ("loss nan", "return", "env-steps", "n/a", "SPS"):
        assert ppo not in run.output
    # The summary: the objective's last and best values.
    assert "  objective    val/score (max): last 0.5, best 0.9" in run.output
    # The manifests: the objective's value at each checkpoint, nothing about returns.
    extra = store.read_manifest(job_folder(run.volume) / "step-00000006", 6)["extra"]
    assert extra["objective"] == {"name": "val/score", "mode": "max", "value": 0.2, "at": 6, "best": 0.9}
    assert "best_return" not in extra
    # TensorBoard: the recipe's own scalars, and no environment-steps-per-second.
    runs = Path(os.environ["LAUNCH_LOCAL_DIR"]) / "runs"
    events = next(runs.rglob("events.out.tfevents.*"))
    tags = EventAccumulator(str(events.parent)).Reload().Tags()["scalars"]
    assert {"train/loss", "train/lr", "val/score", "val/loss"} <= set(tags)
    assert "sps" not in tags
    # The metrics history: one line per logged update, validation under its own names.
    found = next(runs.rglob(history.FILE), None)
    assert found is not None
    entries = history.read(found)
    assert [e["step"] for e in entries] == list(range(1, 10))
    assert entries[2]["metrics"]["val/score"] == 0.9 and "train/loss" in entries[2]["metrics"]
    assert "val/score" not in entries[3]["metrics"]


def test_without_an_objective_the_summary_says_none_was_declared(tmp_path: Path) -> None:
    spec = scored_spec(tmp_path, steps=2)
    recipe = tmp_path / "scored_recipe.py"
    recipe.write_text(recipe.read_text().replace('    objective: ClassVar[tuple[str, str]] = ("val/score", "max")\n', ""))
    run = launch_forked(spec)
    assert run.code == 0, run.output
    assert "  objective    none declared" in run.output
    assert "update 2 of 2: train/loss" in run.output and "(best" not in run.output
    assert "objective" not in store.read_manifest(job_folder(run.volume) / "step-00000002", 2)["extra"]


def test_validate_runs_at_its_cadence_and_after_the_last_update(tmp_path: Path) -> None:
    run = launch_forked(scored_spec(tmp_path / "every4", steps=10, train={"validate_every": 4}))
    assert run.code == 0, run.output
    assert validated_after(tmp_path / "every4") == [4, 8, 10]
    run = launch_forked(scored_spec(tmp_path / "end", steps=5, train={"validate_every": None}))
    assert run.code == 0, run.output
    assert validated_after(tmp_path / "end") == [5]


def test_with_two_processes_each_validates_and_the_mean_is_logged(tmp_path: Path) -> None:
    """Accelerate's way: validate() runs on every process (each may hold its own shard), and the
    metrics logged are the mean over processes (here rank 0 scores 0.9, rank 1 scores 1.9)."""
    run = launch_local(scored_spec(tmp_path, steps=3, config={"rank_bonus": 1.0},
                                   checkpoint={"async": "auto"}), "--processes", "2")
    assert run.code == 0, run.output
    lines = [json.loads(line) for line in (tmp_path / "validate.jsonl").read_text().splitlines()]
    assert sorted((e["after"], e["rank"]) for e in lines) == [(3, 0), (3, 1)]
    assert "update 3 of 3: val/score 1.4 (best 1.4)" in run.output
    extra = store.read_manifest(job_folder(run.volume) / "step-00000003", 3)["extra"]
    assert extra["objective"]["value"] == pytest.approx(1.4)


def test_keep_best_survives_retention(tmp_path: Path) -> None:
    run = launch_forked(scored_spec(tmp_path, steps=12, checkpoint={"keep_last": 1, "keep_best": 1}))
    assert run.code == 0, run.output
    assert checkpoints(job_folder(run.volume)) == ["step-00000003", "step-00000012"]


def test_retention_keeps_the_best_by_the_mode_each_manifest_records(tmp_path: Path) -> None:
    root = tmp_path / "job"

    def save(step: int, value: float | None, mode: str = "min") -> None:
        extra = {} if value is None else {"objective": {"name": "val/loss", "mode": mode, "value": value}}
        store.save(root, step, lambda folder: (folder / "w").write_text(str(step)), spec_hash="h",
                   extra=extra, keep_last=2, keep_best=2)

    for step, value in ((1, 0.5), (2, 0.1), (3, None), (4, 0.3), (5, 0.9), (6, 0.8), (7, 0.7)):
        save(step, value)
    # The newest two, and the two lowest losses, which retention never deleted on the way.
    assert checkpoints(root) == ["step-00000002", "step-00000004", "step-00000006", "step-00000007"]
    assert [c.step for c in store.by_objective(store.complete(root))] == [2, 4, 7, 6]


def test_best_falls_back_to_the_newest_when_no_manifest_records_a_value(tmp_path: Path) -> None:
    root = tmp_path / "job"
    for step in (1, 2):
        store.save(root, step, lambda folder: (folder / "w").write_text("x"), spec_hash="h")
    found = store.newest_usable(root, lambda c: None, print, best=True)
    assert found is not None and found.step == 2


@pytest.mark.parametrize(("pick", "step"), [("best", 3), ("latest", 9)])
def test_evaluate_reads_the_checkpoint_asked_for(tmp_path: Path, pick: str, step: int) -> None:
    stage = {"run": "scored_recipe:evaluate", "retries": 0,
             **({} if pick == "latest" else {"checkpoint": pick})}
    run = launch_forked(scored_spec(tmp_path, checkpoint={"keep_last": 1, "keep_best": 1},
                                    stages={"evaluate": stage}))
    assert run.code == 0, run.output
    assert f"evaluate finished: checkpoint_step {step}" in run.output
    if pick == "best":
        assert "the best checkpoint by the objective: step-00000003 (val/score 0.9)" in run.output


def test_the_summary_counts_every_attempt(tmp_path: Path) -> None:
    """Attempt 1 writes step 3 and is killed at update 5; attempt 2 resumes, writes step 6 and
    fails for good at update 8: the summary counts both attempts' work."""
    spec = scored_spec(tmp_path, retries=1, config={"validate_returns": "dict"},
                       train={"validate_every": 1})
    recipe = tmp_path / "scored_recipe.py"
    recipe.write_text(recipe.read_text().replace(
        "        self.updates = step + 1\n",
        "        self.updates = step + 1\n        if step == 7:\n            raise ValueError('broken')\n"))
    run = launch_forked(spec, env={"LAUNCH_FAULT": "kill:step:5", "LAUNCH_FAULT_ATTEMPT": "1"})
    assert run.code == 1, run.output
    assert "  updates      7 of 9 (newest checkpoint written: step 6)" in run.output
    assert "  checkpoints  2 written" in run.output
    assert "  objective    val/score (max): last 0, best 0.9" in run.output
    assert "attempts     2 (1: transient, 2: " in run.output
    # The history holds each update once: attempt 2 dropped attempt 1's update 4 (after step-3).
    [kept] = (Path(os.environ["LAUNCH_LOCAL_DIR"]) / "runs" / "scored").glob(f"*/{history.FILE}")  # the run's folder
    entries = history.read(kept)
    assert [e["step"] for e in entries] == [1, 2, 3, 4, 5, 6, 7]


def test_a_fresh_container_carries_the_history_on_from_the_volume(tmp_path: Path) -> None:
    mirror, local = tmp_path / "volume-runs", tmp_path / "container-runs"
    mirror.mkdir()
    lines = [json.dumps({"step": s, "time": 1.0, "metrics": {"val/loss": 1.0 / s}}) for s in (1, 2, 3)]
    (mirror / history.FILE).write_text("\n".join(lines) + '\n{"step": 4, "ti')  # a torn last line
    kept = history.History(local, mirror, start_step=2)
    kept.append(3, {"val/loss": 0.25, "train/loss": float("nan")})
    entries = history.read(local / history.FILE)
    assert [(e["step"], e["metrics"]) for e in entries] == [
        (1, {"val/loss": 1.0}), (2, {"val/loss": 0.5}), (3, {"val/loss": 0.25})]


def test_a_validate_that_breaks_the_protocol_is_permanent_and_located(tmp_path: Path) -> None:
    run = launch_forked(scored_spec(tmp_path, config={"validate_returns": "list"}, retries=2))
    assert run.code == 1, run.output
    assert re.search(r"scored_recipe\.py:\d+: Scored\.validate returned list in update 3", run.output)
    assert "attempts     1 (1: permanent)" in run.output


class Recipe:
    def validate(self) -> dict[str, float]:
        return {}


def test_validate_metrics_must_be_numbers() -> None:
    assert metrics(Recipe(), {"val/loss": 1}, 3, "validate") == {"val/loss": 1.0}
    with pytest.raises(ProtocolError, match=r"test_objective\.py:\d+: Recipe\.validate returned "
                                            r"'val/loss': str in update 3; metrics must be numbers"):
        metrics(Recipe(), {"val/loss": "low"}, 3, "validate")


class NoMode(Recipe):
    objective = ("val/loss",)


class OtherMode(Recipe):
    objective = ("val/loss", "lowest")


class NameOnly(Recipe):
    objective = "val/loss"


class NoName(Recipe):
    objective = ("", "min")


class ProgressText(Recipe):
    progress = "train/loss"


@pytest.mark.parametrize("bad", [NoMode, OtherMode, NameOnly, NoName])
def test_a_malformed_objective_is_a_protocol_error_at_the_class(bad: type) -> None:
    with pytest.raises(ProtocolError, match=rf"test_objective\.py:\d+: {bad.__name__}\.objective is "
                                            r".*; it must be a pair \(metric name, \"min\" or \"max\"\)"):
        objective.check(bad)


def test_a_malformed_progress_is_a_protocol_error_at_the_class() -> None:
    with pytest.raises(ProtocolError, match=r"test_objective\.py:\d+: ProgressText\.progress is "
                                            r"'train/loss'; it must be a tuple"):
        objective.check(ProgressText)


def test_the_progress_line_shows_the_objective_then_the_named_metrics() -> None:
    tracker = objective.Tracker(objective.Objective("val/loss", "min"))
    for step, value in ((1, 0.5), (2, 0.25), (3, 0.4)):
        tracker.see({"val/loss": value}, step)
    line = objective.progress_line({"train/loss": 0.123456, "val/loss": 0.4, "epoch": 3.0}, tracker,
                                   ("train/loss",))
    assert line == "val/loss 0.4 (best 0.25), train/loss 0.1235"
    assert tracker.record() == {"name": "val/loss", "mode": "min", "value": 0.4, "at": 3, "best": 0.25}
    assert objective.progress_line({"a/b": 1e-5, "c": 2.0}, objective.Tracker(None), None) == "a/b 1e-05, c 2"
