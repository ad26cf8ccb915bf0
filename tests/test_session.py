"""The runtime session in-process, as a warm Modal container uses it: re-entrant `train`,
catching up with checkpoints written elsewhere, rebuilding after a failed update, and
permanent failures returned rather than raised (Modal would retry a raise)."""

from __future__ import annotations

import inspect
import json
import re
import shutil
from itertools import count
from pathlib import Path

import pytest
import torch
from runjob import RECIPES, checkpoints, probe_spec, write_spec
from test_notify import Hook
from safetensors.torch import load_file

from launcher.load import load_spec
from launcher.runtime import lease as lease_module
from launcher.runtime.control.stop import StopRequest
from launcher.runtime.failures import VolumeError
from launcher.runtime.storage.volume import LocalVolume
from launcher.runtime.train.loop import Phase
from launcher.runtime.train.session import Session


@pytest.fixture
def make_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Containers on one volume (tmp_path/volume), each with its own working copy, serving the
    call `call` (Modal's function call id)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROBE_DIR", str(tmp_path))
    monkeypatch.setenv("LAUNCH_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("LAUNCH_PROCESSES", "1")
    made = count()

    def make(call: str = "fc-1", enter: bool = True, extra: dict | None = None, **sections) -> Session:
        """`extra`: more of the spec, as is (e.g. notify); Session's own keywords in `sections`'
        `session` entry (stops, reports: what the generated app passes on Modal)."""
        kwargs = sections.pop("session", {})
        spec = load_spec(write_spec(tmp_path, {**probe_spec(**sections), **(extra or {})})).spec
        volume = LocalVolume(tmp_path / "volume", tmp_path / f"container-{next(made)}")
        monkeypatch.setenv("LAUNCH_CHECKPOINT_DIR", str(volume.path))
        session = Session(spec.to_dict(), volume=volume, call_id=lambda: call, **kwargs)
        if enter:
            session.stage1()
            session.stage2()
        return session

    return make


def _steps(folder: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (folder / "probe-rank0.jsonl").read_text().splitlines()]


def test_a_warm_container_catches_up_with_checkpoints_written_elsewhere(make_session, tmp_path) -> None:
    warm = make_session(steps=8)  # booted early (min_containers), holding step 0
    other = make_session(steps=8, call="fc-0")
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
    assert session.loop.state.phase is Phase.BROKEN and not session.loop.unsaved  # never saves a half update
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
    traceback = result.pop("traceback")  # for --debug
    assert result == {"status": "permanent",
                      "error": "loss became nan in update 3 of 8 (train_step(2)): training diverged "
                               "(lower the learning rate, or check the recipe)"}
    assert traceback.startswith("Traceback (most recent call last):")
    assert traceback.endswith("PermanentError: loss became nan in update 3 of 8 (train_step(2)): "
                              "training diverged (lower the learning rate, or check the recipe)\n")


def test_a_permanent_failure_in_an_enter_hook_is_reported_by_train(make_session, tmp_path) -> None:
    make_session(steps=2).train()  # a checkpoint made with width 8
    session = make_session(steps=4, train={"config": {"width": 4}})
    result = session.train()
    assert result["status"] == "permanent"
    assert result["error"].startswith("cannot resume from step-00000002: the model changed")


# -- the job's lease, as a Modal container takes it (call ids injected) -------------------------

def _lease(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "volume" / "probe" / "lease.json").read_text())


def _held_by(make_session, call: str, **sections) -> Session:
    """A container of a live run: its lease taken (train's start), not yet released."""
    session = make_session(call=call, **sections)
    session._take_job()
    return session


def test_a_second_run_is_refused_in_one_line_naming_the_holder(make_session, tmp_path) -> None:
    holder = _held_by(make_session, "fc-first", steps=6)
    lease = _lease(tmp_path)
    second = make_session(call="fc-second", steps=6)
    result = second.train()
    assert result["status"] == "permanent"
    assert re.fullmatch(
        r"probe: already running on volume vol: call fc-first \(pid \d+ on [^)]+\) since "
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, last heartbeat \d+ s ago; wait for it to end or stop "
        r"it \(if it is gone, its lease goes stale 1800 s after its last heartbeat, or remove "
        r"probe/lease.json from the volume\)", result["error"]), result["error"]
    assert _lease(tmp_path) == lease  # untouched
    assert holder.train()["status"] == "finished"
    assert _steps(tmp_path) == list(range(6))  # the second run trained nothing


def test_a_retry_of_the_same_call_takes_the_lease_over(make_session, tmp_path) -> None:
    _held_by(make_session, "fc-1", steps=4)  # the first attempt died holding it
    retry = make_session(call="fc-1", steps=4)
    assert retry.train()["status"] == "finished"
    assert not (tmp_path / "volume" / "probe" / "lease.json").exists()  # released at the end


class Clock:
    """The lease's clock, moved by the test alone."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(lease_module, "time", fake)
    return fake


def test_a_stale_lease_is_taken_over(make_session, tmp_path, capsys, clock) -> None:
    _held_by(make_session, "fc-dead", steps=4)
    clock.now += 1801  # stale after 3 commit intervals of 10 min (checkpoint.every)
    assert make_session(call="fc-new", steps=4).train()["status"] == "finished"
    assert re.search(r"taking over the lease of job probe from call fc-dead \(.*\) since .*, last "
                     r"heartbeat 1801 s ago: stale after 1800 s without one", capsys.readouterr().err)


def test_each_commit_is_a_heartbeat(make_session, tmp_path, monkeypatch) -> None:
    session = _held_by(make_session, "fc-1", steps=6)
    beats = []
    original = session.volume.commit

    def commit() -> None:
        beats.append(_lease_in(session.volume.path)["heartbeat"])
        original()

    monkeypatch.setattr(session.volume, "commit", commit)
    session.train()
    assert len(beats) >= 3 and beats == sorted(beats)  # the checkpoints at 3 and 6, the release


def _lease_in(folder: Path) -> dict:
    path = folder / "probe" / "lease.json"
    return json.loads(path.read_text()) if path.exists() else {"heartbeat": float("inf")}


def test_staleness_with_a_step_only_cadence(make_session, tmp_path, clock) -> None:
    session = _held_by(make_session, "fc-1", steps=6, checkpoint={"every": None},
                       compute={"timeout": "2h"})
    assert _lease(tmp_path)["stale_after_s"] == 3 * 7200  # before its first commit: the timeout
    clock.now += 40  # the first commit interval took 40 s
    session.lease.beat()
    session.volume.commit()
    assert _lease(tmp_path)["stale_after_s"] == 120  # then three measured intervals
    clock.now += 25  # a shorter one leaves the longest
    session.lease.beat()
    session.volume.commit()
    assert _lease(tmp_path)["stale_after_s"] == 120


def test_leftovers_are_cleaned_only_under_the_lease(make_session, tmp_path) -> None:
    holder = _held_by(make_session, "fc-first", steps=6)
    in_progress = holder.volume.path / "probe" / ".tmp-step-00000003-live"
    in_progress.mkdir()
    holder.volume.commit()  # as if it were committed mid-write (a shared volume's worst case)
    assert make_session(call="fc-second", steps=6).train()["status"] == "permanent"
    assert (tmp_path / "volume" / "probe" / ".tmp-step-00000003-live").is_dir()


# -- a load that fails part-way leaves nothing behind -----------------------------------------

def _fail_loads(monkeypatch, times: int) -> None:
    from probe_recipe import Probe

    original = Probe.load_state_dict
    left = [times]

    def load_state_dict(self, state) -> None:
        if left[0] > 0:
            left[0] -= 1
            raise RuntimeError("recipe state does not fit")
        original(self, state)

    monkeypatch.setattr(Probe, "load_state_dict", load_state_dict)


def _params(session: Session) -> list[torch.Tensor]:
    return [p.detach().clone() for p in session.recipe.model.parameters()]


def _saved_params(tmp_path: Path, step: int) -> list[torch.Tensor]:
    saved = load_file(str(tmp_path / "volume" / "probe" / f"step-{step:08d}" / "model.safetensors"))
    return [saved["weight"], saved["bias"]]


def test_a_failed_load_falls_back_to_the_previous_checkpoint_with_a_rebuilt_recipe(
        make_session, tmp_path, monkeypatch) -> None:
    make_session(steps=6).train()
    _fail_loads(monkeypatch, times=1)
    session = make_session(steps=6)
    assert session.loop.resumed_from == 3
    assert all(torch.equal(a, b) for a, b in zip(_params(session), _saved_params(tmp_path, 3)))


def test_when_every_load_fails_the_fresh_start_is_really_fresh(make_session, tmp_path, monkeypatch) -> None:
    make_session(steps=6).train()
    fresh = make_session(steps=6, checkpoint={"resume": "never"})
    _fail_loads(monkeypatch, times=2)
    session = make_session(steps=6)
    assert session.loop.resumed_from is None and session.loop.step == 0
    assert all(torch.equal(a, b) for a, b in zip(_params(session), _params(fresh)))
    assert session.train()["status"] == "finished"


# -- failure classes --------------------------------------------------------------------------

def test_an_exception_before_the_first_update_is_permanent_and_names_the_user_s_line(
        make_session, tmp_path, monkeypatch) -> None:
    from probe_recipe import Probe

    def setup(self, accelerator) -> None:
        raise KeyError("obs_dim")

    monkeypatch.setattr(Probe, "setup", setup)
    result = make_session(steps=3).train()
    line = inspect.getsourcelines(setup)[1] + 1
    # The whole traceback, for --debug: the user's line in it, where the exception came from.
    assert f'{__file__}", line {line}, in setup' in result.pop("traceback")
    assert result == {"status": "permanent", "error": (
        f"{__file__}:{line}: KeyError: 'obs_dim' (in stage 2, before the first update "
        "completed: not retried, a retry would fail the same way)")}


def test_train_step_returning_a_float_breaks_the_protocol(make_session, tmp_path, monkeypatch) -> None:
    from probe_recipe import Probe

    def train_step(self, step: int) -> float:
        return 0.5

    monkeypatch.setattr(Probe, "train_step", train_step)
    result = make_session(steps=3).train()
    line = inspect.getsourcelines(train_step)[1]
    assert "ProtocolError: " in result.pop("traceback")
    assert result == {"status": "permanent", "error": (
        f"{__file__}:{line}: Probe.train_step returned float in update 1; it must return "
        "a dict of metric names to numbers")}


def test_a_recipe_without_state_dict_breaks_the_protocol(make_session, tmp_path, monkeypatch) -> None:
    from probe_recipe import Probe

    monkeypatch.delattr(Probe, "state_dict")
    result = make_session(steps=3).train()
    line = inspect.getsourcelines(Probe)[1]
    file = Path(inspect.getsourcefile(Probe))  # the module as first imported by these tests
    shown = file.name if file.parent == Path.cwd() else str(file)
    assert "ProtocolError: " in result.pop("traceback")
    assert result == {"status": "permanent", "error": (
        f"{shown}:{line}: train.recipe probe_recipe:Probe has no state_dict(); a recipe "
        "needs setup, train_step, state_dict and load_state_dict (see launcher/runtime/recipe/protocol.py)")}


def test_a_volume_failure_at_start_up_is_retried_not_permanent(make_session, monkeypatch) -> None:
    session = make_session(enter=False, steps=2)

    def reload() -> None:
        raise OSError("mount went away")

    monkeypatch.setattr(session.volume, "reload", reload)
    session.stage1()
    with pytest.raises(VolumeError, match=r"^checkpoint.volume vol: reload failed: OSError: mount went away$"):
        session.stage2()


def test_a_warm_pipeline_train_reads_the_data_prepare_committed_after_it_booted(make_session, tmp_path) -> None:
    from launcher.runtime.pipeline import stages

    shutil.copy(RECIPES / "probe_stages.py", tmp_path / "probe_stages.py")
    pipeline = {"prepare": {"run": "probe_stages:prepare"}}
    warm = make_session(steps=4, stages=pipeline)  # booted (min_containers) before prepare ran
    committed = stages.StageFolders(tmp_path / "volume", "probe")

    def prepared(digest: str) -> None:  # what prepare commits: its result, then its marker
        stages.write_result(committed, "prepare", {"stage": "prepare", "status": "finished",
                                                   "metrics": {}, "digest": "i" * 64,
                                                   "data_digest": digest})

    prepared("a" * 64)
    first = warm.train(steps=4)
    assert (first["status"], first["steps"]) == ("finished", 4)
    prepared("b" * 64)  # prepare ran again with other inputs: train's checkpoints are stale
    second = warm.train(steps=4)
    assert second["status"] == "permanent"
    assert "it was trained on data from prepare aaaaaaaaaaaa, and prepare's data is now bbbbbbbbbbbb" \
        in second["error"]


# -- what the generated app hands the session on Modal: the stop Dict, and `reports` --


class Requests(dict):
    """What the session asks of the app's modal.Dict: `get`."""


def test_a_stop_request_in_the_dict_ends_the_call_as_stopped_with_a_committed_checkpoint(
        make_session, tmp_path: Path) -> None:
    requests = Requests()
    session = make_session(call="fc-1", steps=50, session={"stops": requests})
    requests["fc-1"] = StopRequest.make("fc-1", now=False).to_dict()  # `launch stop fc-1`
    result = session.train()
    assert (result["status"], result["steps"]) == ("stopped", 1)  # after the update under way
    job = tmp_path / "volume" / "probe"
    assert checkpoints(job) == ["step-00000001"]  # committed: on the volume itself
    assert not (job / "lease.json").exists()
    requests.clear()  # a warm container's next call is not stopped by an old request
    session.call_id = lambda: "fc-2"
    assert session.train(steps=3)["status"] == "finished"


def test_the_training_call_of_a_job_without_stages_reports_retried_then_finished(
        make_session, tmp_path: Path) -> None:
    hook = Hook()
    try:
        _held_by(make_session, "fc-1", steps=4)  # an earlier attempt of this call died holding it
        retry = make_session(call="fc-1", steps=4, extra={"notify": {"url": hook.url}},
                             session={"reports": True})
        assert retry.train()["status"] == "finished"
    finally:
        hook.close()
    bodies = [p["body"] for p in hook.posts]
    assert [(b["run"], b["status"]) for b in bodies] == [("fc-1", "retried"), ("fc-1", "finished")]
    assert isinstance(bodies[1]["cost_usd"], float)  # the call's time at the plan's price
