"""The runtime session in-process, as a warm Modal container uses it: re-entrant `train`,
catching up with checkpoints written elsewhere, rebuilding after a failed update, and
permanent failures returned rather than raised (Modal would retry a raise)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runjob import probe_spec, write_spec

from launcher.load import load_spec
from launcher.runtime.session import Session


@pytest.fixture
def make_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROBE_DIR", str(tmp_path))
    monkeypatch.setenv("LAUNCH_CHECKPOINT_DIR", str(tmp_path / "volume"))
    monkeypatch.setenv("LAUNCH_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("LAUNCH_PROCESSES", "1")

    def make(**sections) -> Session:
        spec = load_spec(write_spec(tmp_path, probe_spec(**sections))).spec
        session = Session(spec.to_dict())
        session.stage1()
        session.stage2()
        return session

    return make


def _steps(folder: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (folder / "probe-rank0.jsonl").read_text().splitlines()]


def test_a_warm_container_catches_up_with_checkpoints_written_elsewhere(make_session, tmp_path) -> None:
    warm = make_session(steps=8)  # booted early (min_containers), holding step 0
    other = make_session(steps=8)
    assert other.train(steps=6)["steps"] == 6  # another container trained meanwhile
    result = warm.train(steps=8)
    assert (result["status"], result["steps"], result["resumed_from"]) == ("finished", 8, 6)
    assert _steps(tmp_path) == [0, 1, 2, 3, 4, 5, 6, 7]


def test_a_second_call_continues_without_repeating_init(make_session, tmp_path) -> None:
    session = make_session(steps=8)
    first = session.train(steps=4)
    stage_times = dict(session.times)
    second = session.train(steps=8)
    assert (first["steps"], second["steps"]) == (4, 8)
    assert session.times == stage_times  # stage 1 and 2 were not run again
    assert _steps(tmp_path) == list(range(8))


def test_resume_false_starts_from_step_zero(make_session, tmp_path) -> None:
    session = make_session(steps=3)
    session.train()
    assert session.train(resume=False)["steps"] == 3
    assert _steps(tmp_path) == [0, 1, 2, 0, 1, 2]


def test_after_a_failed_update_the_next_call_rebuilds_from_the_checkpoint(make_session, tmp_path) -> None:
    session = make_session(steps=8, checkpoint={"every_steps": 2})
    session.recipe.train_step = _fail_at(session.recipe.train_step, step=5)
    with pytest.raises(RuntimeError, match="host lost"):
        session.train()
    assert session.loop.failed and not session.loop.unsaved  # never saves a half update
    result = session.train()
    assert (result["status"], result["steps"], result["resumed_from"]) == ("finished", 8, 4)


def _fail_at(train_step, step: int):
    def wrapped(current: int) -> dict[str, float]:
        if current == step:
            raise RuntimeError("host lost")
        return train_step(current)
    return wrapped


def test_a_permanent_failure_is_returned_not_raised(make_session) -> None:
    session = make_session(steps=8, train={"config": {"fail_at": 2}})
    result = session.train()
    assert result == {"status": "permanent",
                      "error": "loss became nan at step 3: training diverged (lower the learning "
                               "rate, or check the recipe)"}


def test_a_permanent_failure_in_an_enter_hook_is_reported_by_train(make_session, tmp_path) -> None:
    make_session(steps=2).train()  # a checkpoint made with width 8
    session = make_session(steps=4, train={"config": {"width": 4}})
    result = session.train()
    assert result["status"] == "permanent"
    assert result["error"].startswith("cannot resume from step-00000002: the model changed")
