"""`launch stop` on Modal, with fakes at the SDK boundary it calls (FunctionCall.from_id, .get,
.cancel; Dict.from_name, .put; Volume.from_name, .read_file, .remove_file), and a check that the
real `modal` package has those names and signatures. Also the stop watch a loop asks on Modal."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import modal
import modal.exception
import pytest

from launcher.backends import modal as modal_backend
from launcher.runtime.control.stop import STOP_DICT, StopRequest, StopWatch
from test_stop import stop

RUN = "fc-01RUN"


class FakeCall:
    def __init__(self, calls: FakeModal, call_id: str) -> None:
        self.calls, self.call_id = calls, call_id

    def get(self, timeout: float | None = None) -> Any:
        assert timeout == 0
        outcome = self.calls.outcomes.get(self.call_id, "running")
        if outcome == "running":
            raise TimeoutError()
        return outcome

    def cancel(self, terminate_containers: bool = False) -> None:
        self.calls.cancelled.append((self.call_id, terminate_containers))


class FakeDict(dict):
    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool:
        self[key] = value
        return True


class FakeModal:
    def __init__(self, files: dict[str, dict]) -> None:
        self.outcomes: dict[str, Any] = {}
        self.cancelled: list[tuple[str, bool]] = []
        self.dicts: dict[tuple[str, str | None], FakeDict] = {}
        self.files = {path: json.dumps(body).encode() for path, body in files.items()}
        self.removed: list[str] = []

    def from_id(self, call_id: str) -> FakeCall:
        if not call_id.startswith("fc-0"):
            raise modal.exception.NotFoundError(f"Function call {call_id} not found")
        return FakeCall(self, call_id)

    def dict_from_name(self, name: str, *, environment_name: str | None = None,
                       create_if_missing: bool = False) -> FakeDict:
        assert create_if_missing
        return self.dicts.setdefault((name, environment_name), FakeDict())

    def volume_from_name(self, name: str, *, environment_name: str | None = None) -> Any:
        fake = self

        class Volume:
            def read_file(self, path: str) -> Any:
                if path not in fake.files:
                    raise modal.exception.NotFoundError(path)
                yield fake.files[path][:5]
                yield fake.files[path][5:]

            def remove_file(self, path: str, recursive: bool = False) -> None:
                fake.removed.append(f"{name}:{path}")

        return Volume()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeModal:
    found = FakeModal({"probe/lease.json": {"call_id": RUN},
                       "probe/driver.json": {"driver": RUN, "stages": {
                           "prepare": {"call": "fc-0PREP", "result": {"status": "finished"}},
                           "train": {"call": "fc-0TRAIN"}}}})
    monkeypatch.setattr(modal.FunctionCall, "from_id", found.from_id)
    monkeypatch.setattr(modal.Dict, "from_name", found.dict_from_name)
    monkeypatch.setattr(modal.Volume, "from_name", found.volume_from_name)
    monkeypatch.setattr(modal_backend, "has_credentials", lambda: True)
    return found


def test_a_graceful_stop_leaves_the_request_in_the_dict_the_loop_asks(
        fake: FakeModal, capsys: pytest.CaptureFixture[str]) -> None:
    code, said = stop(capsys, RUN, "--env", "staging")
    assert code == 0, said
    assert said.startswith(f"stop asked of {RUN}: its loop sees it within a few seconds")
    request = StopRequest.of(fake.dicts[(STOP_DICT, "staging")][RUN])
    assert request is not None and request.run == RUN and not request.now
    assert fake.cancelled == []


def test_stop_now_cancels_the_call_and_its_stage_and_releases_the_lease(
        fake: FakeModal, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text("version: 1\nname: probe\ncheckpoint: {volume: vol}\n"
                    "train: {recipe: launcher.recipes.ppo:PPO}\n")
    code, said = stop(capsys, RUN, "--now", "--job", str(spec))
    assert code == 0, said
    assert fake.cancelled == [(RUN, True), ("fc-0TRAIN", True)]  # not prepare: it had finished
    assert fake.removed == ["vol:probe/lease.json"]
    assert said == (f"cancelled {RUN}; stage train's call fc-0TRAIN cancelled, the lease of job "
                    "probe released\n")


def test_stop_now_without_the_job_cancels_and_says_the_lease_goes_stale(
        fake: FakeModal, capsys: pytest.CaptureFixture[str]) -> None:
    code, said = stop(capsys, RUN, "--now")
    assert (code, fake.cancelled, fake.removed) == (0, [(RUN, True)], [])
    assert "its lease of the job goes stale by itself" in said


def test_stop_of_an_unknown_or_ended_call_is_one_line(fake: FakeModal, capsys: pytest.CaptureFixture[str]) -> None:
    assert stop(capsys, "fc-XYZ") == (1, "fc-XYZ: no such run (not a run here, nor a function call on Modal)\n")
    fake.outcomes[RUN] = {"status": "finished"}
    assert stop(capsys, RUN, "--now") == (1, f"{RUN}: this run has ended; nothing to stop\n")
    assert fake.cancelled == []


def test_stop_on_modal_without_credentials_says_how_to_get_them(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(modal_backend, "has_credentials", lambda: False)
    code, said = stop(capsys, RUN)
    assert code == 1 and said.startswith(f"{RUN}: no Modal credentials: run `modal setup`")


def test_the_real_modal_has_what_stop_calls() -> None:
    cancel = inspect.signature(modal.FunctionCall.cancel)
    assert cancel.parameters["terminate_containers"].default is False
    assert "timeout" in inspect.signature(modal.FunctionCall.get).parameters
    assert list(inspect.signature(modal.FunctionCall.from_id).parameters)[:2] == ["cls", "function_call_id"] \
        or "function_call_id" in inspect.signature(modal.FunctionCall.from_id).parameters
    from_name = inspect.signature(modal.Dict.from_name).parameters
    assert {"environment_name", "create_if_missing"} <= set(from_name)
    assert list(inspect.signature(modal.Dict.put).parameters)[:3] == ["self", "key", "value"]
    assert list(inspect.signature(modal.Dict.get).parameters)[:3] == ["self", "key", "default"]
    assert list(inspect.signature(modal.Volume.read_file).parameters) == ["self", "path"]
    assert list(inspect.signature(modal.Volume.remove_file).parameters)[:2] == ["self", "path"]
    assert "environment_name" in inspect.signature(modal.Volume.from_name).parameters
    assert issubclass(modal.exception.NotFoundError, modal.exception.Error)


class Store:
    """A Dict as the loop sees it on Modal: `get` only; counts the server calls."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.asked = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.asked += 1
        return self.values.get(key, default)


def test_the_loop_s_stop_watch_asks_a_remote_store_at_most_every_poll_interval() -> None:
    store = Store()
    watch = StopWatch(store, lambda: RUN)
    assert watch.poll_s == 10.0  # a Dict has no poll_s of its own: a server call every 10 s
    assert watch.requested() is None
    store.values[RUN] = StopRequest.make(RUN, now=False).to_dict()
    assert watch.requested() is None and store.asked == 1  # within the interval: not asked again
    watch._asked = float("-inf")  # the interval has passed
    assert watch.requested() is not None and store.asked == 2
    assert watch.requested() is not None and store.asked == 2  # asked once: stays asked


def test_a_stop_watch_ignores_another_run_s_request_and_a_failing_store(capsys: pytest.CaptureFixture[str]) -> None:
    store = Store()
    store.values[RUN] = {"run": "fc-0OTHER"}
    assert StopWatch(store, lambda: RUN, poll_s=0).requested() is None

    class Broken:
        def get(self, key: str, default: Any = None) -> Any:
            raise ConnectionError("no network")

    watch = StopWatch(Broken(), lambda: RUN, poll_s=0)
    assert watch.requested() is None and watch.requested() is None
    assert capsys.readouterr().err.count("[launch] warning: cannot read stop requests: ConnectionError: no network") == 1
