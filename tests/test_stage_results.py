"""Stage and pipeline results as types: read from the JSON they travel as, and written back
byte for byte, extra keys kept in place."""

from __future__ import annotations

import json

from launcher.runtime.pipeline.results import STAGE_NAMES, PipelineResult, StageResult, Status

TRAIN = {"stage": "train", "status": "finished", "metrics": {"loss": 0.5}, "error": None, "seconds": 1.5,
         "steps": 6, "digest": "ab", "inputs": {"seed": 1}, "wall_seconds": 2.0}
SKIPPED = {"stage": "prepare", "status": "skipped", "metrics": {"rows": 3}, "digest": "cd", "seconds": 0.0}


def dumped(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=False)


def test_a_stage_result_round_trips_byte_for_byte() -> None:
    for data in (TRAIN, SKIPPED, {"status": "failed", "error": "RuntimeError: retries spent"},
                 {"stage": "evaluate", "status": "permanent", "error": "x", "bug": True, "future": [1]}):
        result = StageResult.from_json(data)
        assert dumped(result.to_json()) == dumped(data)
    train = StageResult.from_json(TRAIN)
    assert (train.stage, train.status, train.metrics, train.error, train.bug) == \
        ("train", Status.FINISHED, {"loss": 0.5}, None, False)


def test_a_changed_result_keeps_its_keys_in_place_and_adds_only_what_is_set() -> None:
    changed = StageResult.from_json(SKIPPED).but(status=Status.FAILED, wall_seconds=1.0).to_json()
    assert list(changed) == [*SKIPPED, "wall_seconds"] and changed["status"] == "failed"
    assert type(changed["status"]) is str  # plain JSON: what Modal pickles back to `launch`
    assert StageResult(stage="train", status=Status.PERMANENT, bug=True).to_json() == {
        "stage": "train", "status": "permanent", "bug": True}


def test_statuses_are_their_json_strings_and_unknown_ones_are_failures() -> None:
    assert Status.FINISHED == "finished" and json.dumps(Status.SKIPPED) == '"skipped"'
    assert [s for s in Status if s.done] == [Status.FINISHED, Status.SKIPPED]
    assert StageResult.from_json({"status": "exploded"}).status is Status.FAILED
    assert StageResult.from_json({}, "prepare").stage == "prepare"
    assert STAGE_NAMES == ("prepare", "train", "evaluate")


def test_a_pipeline_result_round_trips_in_each_shape_the_driver_returns() -> None:
    for data in ({"status": "finished", "failed_stage": None, "stages": [SKIPPED, TRAIN]},
                 {"status": "failed", "failed_stage": "train", "stages": [TRAIN]},
                 {"status": "permanent", "error": "held", "failed_stage": None, "stages": []},
                 {"status": "permanent", "error": "bug", "bug": True, "failed_stage": None, "stages": []}):
        assert dumped(PipelineResult.from_json(data).to_json()) == dumped(data)
    failed = PipelineResult.from_json({"status": "failed", "failed_stage": "evaluate", "stages": [
        {"stage": "evaluate", "status": "permanent", "bug": True}]})
    assert failed.has_bug and failed.stage("evaluate") is failed.stages[0] and failed.stage("train") is None
