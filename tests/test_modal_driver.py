"""The generated app's driver (`pipeline`), run through Modal's own client objects with fakes at
the SDK boundary it calls: `Function.spawn`, `FunctionCall.from_id` and `.get`,
`modal.current_function_call_id`, `Volume.commit` and `reload`. No Modal server is reached;
the stage methods are the app's own `modal.Function` objects, and the driver's files land where
LAUNCH_CHECKPOINT_DIR says, as the stages' do.

A last test checks that the installed `modal` has those names with the signatures faked here.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
from pathlib import Path
from typing import Any

import modal
import pytest

from regen_golden import ROOT, render_case

CASE = "pipeline-digits"
# `.local()` warns that the function runs without its mounted volume: here that is the point.
pytestmark = pytest.mark.filterwarnings("ignore:The pipeline function is executing locally")


class Modal:
    """What Modal's servers would answer: spawned calls get ids, `get` returns each stage's
    scripted result (or raises it: KeyboardInterrupt is the driver's container preempted)."""

    def __init__(self, module: Any, monkeypatch: pytest.MonkeyPatch, driver_call: str) -> None:
        # Which stage a spawned method is: Modal's own reading of each class.
        self.stage_of = {repr(getattr(module, cls)().__getattr__(method).info()): stage
                         for cls, method, stage in [("Trainer", "train", "train"),
                                                    ("Prepare", "run", "prepare"),
                                                    ("Evaluate", "run", "evaluate")]}
        assert len(self.stage_of) == 3
        self.results: dict[str, Any] = {}
        self.spawned: list[tuple[str, dict[str, Any]]] = []
        self.fetched: list[str] = []
        self.volume: list[str] = []
        self.driver_call = driver_call
        fake = self

        class Call:
            def __init__(self, object_id: str) -> None:
                self.object_id = object_id

            def get(self, timeout: float | None = None, *, index: int = 0) -> Any:
                stage = self.object_id.split("-")[1]
                found = fake.results.get(stage, {"status": "finished", "metrics": {}})
                if isinstance(found, BaseException):
                    raise found
                return found

        def spawn(function: modal.Function, *args: Any, **kwargs: Any) -> Call:
            assert args == ()
            stage = fake.stage_of[repr(function.info())]
            fake.spawned.append((stage, kwargs))
            return Call(f"fc-{stage}-{len(fake.spawned)}")

        def from_id(function_call_id: str, client: Any = None) -> Call:
            fake.fetched.append(function_call_id)
            return Call(function_call_id)

        monkeypatch.setattr(modal.Function, "spawn", spawn)
        monkeypatch.setattr(modal.FunctionCall, "from_id", staticmethod(from_id))
        monkeypatch.setattr(modal, "current_function_call_id", lambda: self.driver_call)
        monkeypatch.setattr(modal.Volume, "commit", lambda volume: self.volume.append("commit"))
        monkeypatch.setattr(modal.Volume, "reload", lambda volume: self.volume.append("reload"))

    @property
    def stages(self) -> list[str]:
        return [stage for stage, _ in self.spawned]


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    path = tmp_path / "app.py"
    path.write_text(render_case(CASE), "utf-8")
    monkeypatch.setenv("LAUNCH_REPO_ROOT", str(ROOT))
    monkeypatch.setenv("LAUNCH_CHECKPOINT_DIR", str(tmp_path / "mount"))
    module_spec = importlib.util.spec_from_file_location("generated_driver_app", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def job_folder(tmp_path: Path, app: Any) -> Path:
    return tmp_path / "mount" / app.SPEC["name"]


def test_the_driver_spawns_each_stage_under_its_lease_and_waits_for_it(app, tmp_path, monkeypatch) -> None:
    server = Modal(app, monkeypatch, "fc-driver")
    leases: list[str] = []
    original = server.results

    class Watching(dict):  # what the lease says while each stage "runs"
        def get(self, stage: str, default: Any = None) -> Any:
            leases.append(json.loads((job_folder(tmp_path, app) / "lease.json").read_text())["call_id"])
            return original.get(stage, default)

    server.results = Watching()
    out = app.pipeline.local(rerun=[])
    assert out["status"] == "finished", out
    assert server.spawned == [("prepare", {"lease": "fc-driver"}), ("train", {"lease": "fc-driver"}),
                              ("evaluate", {"lease": "fc-driver"})]
    assert server.fetched == ["fc-prepare-1", "fc-train-2", "fc-evaluate-3"]
    assert leases == ["fc-driver"] * 3
    # LAUNCH_CHECKPOINT_DIR is honoured: the record is there, the lease released at the end
    record = json.loads((job_folder(tmp_path, app) / "driver.json").read_text())
    assert record["driver"] == "fc-driver" and sorted(record["stages"]) == ["evaluate", "prepare", "train"]
    assert not (job_folder(tmp_path, app) / "lease.json").exists()
    assert not Path("/checkpoints").exists()
    assert server.volume[0] == "reload" and server.volume[-1] == "commit"


def test_a_restarted_driver_waits_for_the_train_call_it_made(app, tmp_path, monkeypatch) -> None:
    server = Modal(app, monkeypatch, "fc-driver")
    server.results = {"train": KeyboardInterrupt()}  # preempted while it waits for train
    with pytest.raises(KeyboardInterrupt):
        app.pipeline.local(rerun=[])
    assert server.stages == ["prepare", "train"]
    server.results = {}
    out = app.pipeline.local(rerun=[])  # Modal restarts the same input: the same call id
    assert out["status"] == "finished", out
    assert server.stages == ["prepare", "train", "evaluate"]  # no second train call
    assert server.fetched[-2:] == ["fc-train-2", "fc-evaluate-3"]


def test_a_second_launch_while_the_first_is_in_evaluate_is_refused(app, tmp_path, monkeypatch) -> None:
    server = Modal(app, monkeypatch, "fc-first")
    second: list[dict] = []

    class LaunchAgain(dict):
        def get(self, stage: str, default: Any = None) -> Any:
            if stage == "evaluate" and not second:
                server.driver_call = "fc-second"
                second.append(app.pipeline.local(rerun=[]))
                server.driver_call = "fc-first"
            return default

    server.results = LaunchAgain()
    assert app.pipeline.local(rerun=[])["status"] == "finished"
    assert second[0]["status"] == "permanent"
    assert "already running on volume digits: call fc-first" in second[0]["error"]
    assert server.stages == ["prepare", "train", "evaluate"]  # the second spawned nothing


def test_modal_has_the_names_the_driver_calls_with_these_signatures() -> None:
    def params(function: Any) -> list[str]:
        return list(inspect.signature(function).parameters)

    assert params(modal.Function.spawn) == ["self", "args", "kwargs"]
    assert params(modal.FunctionCall.from_id) == ["cls", "function_call_id", "client"]
    assert params(modal.FunctionCall.get) == ["self", "timeout", "index"]
    assert isinstance(inspect.getattr_static(modal.FunctionCall, "object_id"), property)
    assert params(modal.current_function_call_id) == []
    assert params(modal.Volume.commit) == params(modal.Volume.reload) == ["self"]
