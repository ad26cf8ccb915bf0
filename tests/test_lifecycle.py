"""`--local` drives the same lifecycle as Modal, through names launcher owns.

For every golden app, the hooks that Modal's container would run on the app's class (found
with Modal's own machinery, as modal/_runtime/user_code_imports.py finds them) reach the
same Session hooks, with the same arguments and in the same order, as the local worker's.
Modal's private names are used here, in a test of Modal itself, and nowhere in launcher.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from typing import Any

import modal
import pytest
from modal._partial_function import _find_callables_for_obj, _PartialFunctionFlags

from launcher.backends import worker
from launcher.load import load_spec
from launcher.runtime.lifecycle.container import run_container
from launcher.runtime.pipeline.stage_session import StageSession
from launcher.runtime.storage.volume import LocalVolume
from launcher.runtime.train.session import Session
from regen_golden import GOLDEN, ROOT, golden_cases, render_case

CLUSTER = object()  # what modal.Cluster.from_context() gives inside a clustered container
Call = tuple[str, dict[str, Any]]


def recording(cls: type, monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    """Every call of a method of `cls` (private ones and __init__ too), recorded instead of run."""
    recorded: list[Call] = []
    for name, function in list(vars(cls).items()):
        if inspect.isfunction(function):
            monkeypatch.setattr(cls, name, _recorder(name, function, recorded))
    return recorded


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    return recording(Session, monkeypatch)


def _recorder(name: str, function: Any, recorded: list[Call]) -> Any:
    signature = inspect.signature(function)

    def record(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        recorded.append((name, dict(list(bound.arguments.items())[1:])))  # without self
        return {"status": "finished"} if name in ("train", "run") else None

    return record


def run_in_modal_container(module: Any, cls: str = "Trainer", method: str = "train",
                           **kwargs: Any) -> None:
    """The app's class driven in the order a Modal container drives it, by Modal's own lookup:
    enter(snap=True) hooks, [snapshot], enter(snap=False) hooks, the input, exit hooks."""
    obj = getattr(module, cls)._get_user_cls()()
    flags = _PartialFunctionFlags
    kwargs = kwargs or ({"resume": True, "steps": 0} if method == "train" else {})
    try:
        for flag in (flags.ENTER_PRE_SNAPSHOT, flags.ENTER_POST_SNAPSHOT):
            for hook in _find_callables_for_obj(obj, flag).values():
                hook()
        methods = _find_callables_for_obj(obj, flags.CALLABLE_INTERFACE)
        assert list(methods) == [method]
        methods[method](**kwargs)  # as launcher.backends.modal spawns it, or the driver calls it
    finally:
        for hook in _find_callables_for_obj(obj, flags.EXIT).values():
            hook()


def import_generated(path: Path) -> Any:
    module_spec = importlib.util.spec_from_file_location(f"generated_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def without_volume(calls: list[Call]) -> list[Call]:
    """The calls without what differs by design: the volume, where the call id comes from, and
    the runtime's settings (the worker parses them and passes them; the app's class reads its own),
    where stop requests are kept (a modal.Dict there, a folder here) and whether the call reports
    (on Modal the training call of a job without stages is its run's coordinator)."""
    differ = ("volume", "call_id", "settings", "stops", "reports")
    return [(name, {k: v for k, v in args.items() if k not in differ})
            for name, args in calls]


@pytest.mark.parametrize("case", golden_cases())
def test_modal_and_local_run_the_same_session_hooks_in_the_same_order(
        case: str, calls: list[Call], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec(GOLDEN / case / "spec.yaml").spec
    cluster = CLUSTER if spec.compute.nodes > 1 else None
    app = tmp_path / "app.py"
    app.write_text(render_case(case), "utf-8")
    monkeypatch.setenv("LAUNCH_REPO_ROOT", str(ROOT))
    monkeypatch.setenv("LAUNCH_VOLUME", str(tmp_path / "volume"))
    monkeypatch.setenv("LAUNCH_CHECKPOINT_DIR", str(tmp_path / "work"))
    monkeypatch.setattr(modal.Cluster, "from_context", staticmethod(lambda: CLUSTER))
    monkeypatch.setitem(sys.modules, "launch_app", None)  # the worker's import, undone after

    module = import_generated(app)
    run_in_modal_container(module)
    on_modal = list(calls)
    calls.clear()
    assert worker.attempt(app, cluster=cluster) == {"status": "finished"}
    local = list(calls)

    assert [name for name, _ in on_modal] == ["__init__", "stage1", "stage2", "train", "shutdown"]
    assert without_volume(local) == without_volume(on_modal)
    assert on_modal[0][1]["spec"] == spec.to_dict() == module.SPEC
    # no run record from launch here (a direct call): run is None and the run id is the call's
    assert on_modal[3][1] == {"resume": True, "steps": None, "cluster": cluster, "lease": "",
                              "run": None, "run_id": ""}
    assert on_modal[0][1]["stops"] is module.stop_requests  # the app's modal.Dict there
    assert on_modal[0][1]["volume"] is module.volume  # the app's modal.Volume there ...
    volume = local[0][1]["volume"]  # ... and a local directory here
    assert isinstance(volume, LocalVolume) and volume.committed == tmp_path / "volume"
    assert volume.path == tmp_path / "work"  # this attempt's working copy of it
    # the job's lease is taken for the call being served: Modal's call id, the local run's id
    assert on_modal[0][1]["call_id"] is modal.current_function_call_id
    assert local[0][1]["call_id"] is worker.run_id


PIPELINE_CASES = [(case, stage.name) for case in golden_cases()
                  for stage in load_spec(GOLDEN / case / "spec.yaml").spec.stages]


def test_there_is_a_pipeline_golden() -> None:
    assert ("pipeline-digits", "prepare") in PIPELINE_CASES


@pytest.mark.parametrize("case, stage", PIPELINE_CASES)
def test_a_stage_runs_the_same_hooks_on_modal_and_locally(
        case: str, stage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = recording(StageSession, monkeypatch)
    app = tmp_path / "app.py"
    app.write_text(render_case(case), "utf-8")
    monkeypatch.setenv("LAUNCH_REPO_ROOT", str(ROOT))
    monkeypatch.setenv("LAUNCH_VOLUME", str(tmp_path / "volume"))
    monkeypatch.setenv("LAUNCH_CHECKPOINT_DIR", str(tmp_path / "work"))
    monkeypatch.setitem(sys.modules, "launch_app", None)

    monkeypatch.setenv("LAUNCH_LEASE", "fc-driver")  # what the local driver gives its stages

    module = import_generated(app)
    run_in_modal_container(module, stage.capitalize(), "run", lease="fc-driver")  # as the driver spawns it
    on_modal = list(recorded)
    recorded.clear()
    assert worker.attempt_stage(app, stage) == {"status": "finished"}
    assert [name for name, _ in on_modal] == ["__init__", "stage1", "stage2", "run", "shutdown"]
    assert without_volume(recorded) == without_volume(on_modal)
    assert on_modal[0][1] == {"spec": module.SPEC, "stage": stage, "volume": module.volume,
                              "commit": module.CODE_COMMIT, "call_id": modal.current_function_call_id,
                              "settings": None}  # its own process's
    assert recorded[0][1]["call_id"] is worker.run_id
    assert on_modal[3][1] == {"lease": "fc-driver", "run_id": ""}  # under the driver's lease


PIPELINE_GOLDENS = sorted({case for case, _ in PIPELINE_CASES})


@pytest.mark.parametrize("case", PIPELINE_GOLDENS)
def test_a_pipelines_train_gets_the_drivers_lease_on_modal_and_locally(
        case: str, calls: list[Call], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = tmp_path / "app.py"
    app.write_text(render_case(case), "utf-8")
    monkeypatch.setenv("LAUNCH_REPO_ROOT", str(ROOT))
    monkeypatch.setenv("LAUNCH_VOLUME", str(tmp_path / "volume"))
    monkeypatch.setenv("LAUNCH_CHECKPOINT_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("LAUNCH_LEASE", "fc-driver")
    monkeypatch.setitem(sys.modules, "launch_app", None)
    run_in_modal_container(import_generated(app), resume=True, steps=0, lease="fc-driver")
    on_modal = list(calls)
    calls.clear()
    assert worker.attempt(app) == {"status": "finished"}
    assert without_volume(calls) == without_volume(on_modal)
    assert on_modal[3] == ("train", {"resume": True, "steps": None, "cluster": None, "lease": "fc-driver",
                                     "run": None, "run_id": ""})


class Hooks:
    """A container object whose hooks log themselves; one of them may fail."""

    def __init__(self, fail: str = "") -> None:
        self.log: list[str] = []
        self.fail = fail

    def _hook(self, name: str) -> None:
        self.log.append(name)
        if name == self.fail:
            raise RuntimeError(f"{name} failed")

    def stage1(self) -> None:
        self._hook("stage1")

    def stage2(self) -> None:
        self._hook("stage2")

    def train(self, resume: bool = True, steps: int | None = None, cluster: Any = None,
              lease: str = "") -> dict[str, Any]:
        self._hook("train")
        return {"status": "finished", "resume": resume, "steps": steps, "cluster": cluster}

    def shutdown(self) -> None:
        self._hook("shutdown")


def test_the_exit_hook_runs_after_a_failed_enter_hook() -> None:
    hooks = Hooks(fail="stage2")
    with pytest.raises(RuntimeError, match="stage2 failed"):
        run_container(hooks)
    assert hooks.log == ["stage1", "stage2", "shutdown"]


class LoggedVolume:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def commit(self) -> None:
        self.log.append("commit")

    def reload(self) -> None:
        self.log.append("reload")


def test_every_volume_is_committed_after_the_exit_hooks_even_after_a_failure() -> None:
    hooks = Hooks(fail="train")
    with pytest.raises(RuntimeError, match="train failed"):
        run_container(hooks, volumes=[LoggedVolume(hooks.log)])
    assert hooks.log == ["stage1", "stage2", "train", "shutdown", "commit"]


def test_a_failing_exit_hook_is_a_warning_and_the_result_stands(capsys: pytest.CaptureFixture[str]) -> None:
    hooks = Hooks(fail="shutdown")
    result = run_container(hooks, resume=False, steps=5, cluster=CLUSTER)
    assert result == {"status": "finished", "resume": False, "steps": 5, "cluster": CLUSTER}
    assert hooks.log == ["stage1", "stage2", "train", "shutdown"]
    assert capsys.readouterr().err == "[launch] warning: exit hook failed: RuntimeError: shutdown failed\n"


# -- no private Modal names in launcher ---------------------------------------------------

PRIVATE_MODAL_IMPORT = re.compile(r"\bmodal(\.\w+)*\._\w|\bfrom\s+modal(\.\w+)*\s+import\s[^\n#]*\b_\w")


def private_modal_names(text: str) -> list[str]:
    """Lines that name a private module or name of modal (modal._x, from modal import _x)."""
    return [line.strip() for line in text.splitlines() if PRIVATE_MODAL_IMPORT.search(line)]


# Public despite the underscore: the os module documents `_exit` (exit without cleanup).
PUBLIC_UNDERSCORED = {"os._exit"}


def private_attributes(source: str) -> list[str]:
    """`x._name` on anything but self or cls: reaching into another object's internals, as
    `Trainer._get_user_cls()` reaches into Modal's."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and ast.unparse(node) not in PUBLIC_UNDERSCORED
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append(f"{ast.unparse(node)} (line {node.lineno})")
    return found


def test_the_checkers_find_what_the_worker_used_to_do() -> None:
    old_worker = ("from modal._partial_function import _find_callables_for_obj, _PartialFunctionFlags as F\n"
                  "obj = module.Trainer._get_user_cls()()\n")
    assert private_modal_names(old_worker) == [old_worker.splitlines()[0]]
    assert private_modal_names("import modal._utils as u\nfrom modal import App, _Foo\n") == [
        "import modal._utils as u", "from modal import App, _Foo"]
    assert private_modal_names("import modal\nfrom modal import App  # _private\n") == []
    assert private_attributes(old_worker) == ["module.Trainer._get_user_cls (line 2)"]


def test_no_private_modal_name_in_launcher_or_the_template() -> None:
    files = sorted((ROOT / "launcher").rglob("*.py")) + sorted((ROOT / "templates").iterdir())
    found = [f"{path.relative_to(ROOT)}: {line}" for path in files
             for line in private_modal_names(path.read_text("utf-8"))]
    assert found == []


def test_the_runtime_backends_and_generated_apps_reach_into_no_private_attribute() -> None:
    files = [*sorted((ROOT / "launcher" / "runtime").rglob("*.py")),
             *sorted((ROOT / "launcher" / "backends").glob("*.py")),
             *sorted(GOLDEN.glob("*/app.py"))]
    found = [f"{path.relative_to(ROOT)}: {hit}" for path in files
             for hit in private_attributes(path.read_text("utf-8"))]
    assert found == []
