"""Runs on Modal, tested up to the SDK boundary: a fake Volume (`listdir`, `read_file`) and
FunctionCall (`from_id`, `get`, `logs`), held to the real modal client's names and signatures;
and the coordinators that write records there (the training call of a train-only job, the
pipeline's driver), run offline on a local volume with Modal's commit semantics."""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import modal
import pytest

from launcher.cli import main
from launcher.load import load_spec
from launcher.runtime.runs.record import RunRecord, record_path
from launcher.runtime.runs.recorder import Recorder
from launcher.runtime.storage.volume import LocalVolume
from launcher.runtime.train.session import Session
from runjob import probe_spec, write_spec

ROOT = Path(__file__).resolve().parent.parent


def test_the_modal_client_has_the_names_and_signatures_the_registry_calls() -> None:
    listdir = inspect.signature(modal.Volume.listdir)
    assert list(listdir.parameters) == ["self", "path", "recursive"]
    assert list(inspect.signature(modal.Volume.read_file).parameters) == ["self", "path"]
    assert "environment_name" in inspect.signature(modal.Volume.from_name).parameters
    assert set(modal.types.FileEntry.__dataclass_fields__) >= {"path", "type"}
    assert "function_call_id" in inspect.signature(modal.FunctionCall.from_id).parameters
    assert "timeout" in inspect.signature(modal.FunctionCall.get).parameters
    assert "terminate_containers" in inspect.signature(modal.FunctionCall.cancel).parameters
    assert isinstance(inspect.getattr_static(modal.FunctionCall, "logs"), property)
    from modal._logs_manager import FunctionCallLogsManager  # what FunctionCall.logs gives

    assert {"fetch", "stream"} <= set(dir(FunctionCallLogsManager))
    assert issubclass(modal.exception.NotFoundError, modal.exception.Error)


class FakeVolume:
    """modal.Volume as the registry uses it, over a dict of path -> bytes."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def listdir(self, path: str, *, recursive: bool = False) -> list[Any]:
        prefix = "" if path in ("", "/") else path.strip("/") + "/"
        names = {p[len(prefix):].split("/")[0] for p in self.files if p.startswith(prefix)}
        if not names:
            raise modal.exception.NotFoundError(f"{path} not found")
        return [SimpleNamespace(path=prefix + n, type=1) for n in sorted(names)]

    def read_file(self, path: str):
        if path not in self.files:
            raise modal.exception.NotFoundError(f"{path} not found")
        data = self.files[path]
        yield data[: len(data) // 2]  # in chunks, as Modal streams it
        yield data[len(data) // 2:]


class FakeCall:
    def __init__(self, outcome: str) -> None:
        self.outcome = outcome
        self.logs = SimpleNamespace(fetch=lambda: iter([SimpleNamespace(message="hello from Modal\n")]),
                                    stream=lambda: iter([SimpleNamespace(message="streamed\n")]))

    def get(self, timeout: float | None = None) -> Any:
        assert timeout == 0
        if self.outcome == "running":
            raise TimeoutError
        if self.outcome == "raised":
            raise modal.exception.RemoteError("boom")
        return {"status": "finished"}


def _record(run: str, status: str, call: str, **kw: Any) -> bytes:
    rec = RunRecord(run=run, job="ppo-cartpole", volume="ppo-checkpoints", backend="modal",
                    started=float(run[9:15]), status=status, coordinator={"call_id": call},
                    calls={"train": [call]}, gpu="H100", prices={"train": 3.9492}, **kw)
    return rec.to_json().encode()


@pytest.fixture
def on_modal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, bytes]:
    """A repository with jobs/ppo.yaml, and its volume on a fake Modal."""
    (tmp_path / "jobs").mkdir()
    shutil.copy(ROOT / "jobs/ppo.yaml", tmp_path / "jobs/ppo.yaml")
    monkeypatch.chdir(tmp_path)
    ckpt = {"model.safetensors": b"weights" * 100, "optimizer.bin": b"adam" * 50}
    manifest = {"format": 1, "step": 200, "files": {
        name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in ckpt.items()}}
    files = {
        "ppo-cartpole/runs/20261208-010000-aaaa/run.json": _record(
            "20261208-010000-aaaa", "finished", "fc-done", checkpoints={"newest": {"step": 200, "time": 1.0},
                                                                         "best": None}),
        "ppo-cartpole/runs/20261208-020000-bbbb/run.json": _record("20261208-020000-bbbb", "running", "fc-live"),
        "ppo-cartpole/runs/20261208-030000-cccc/run.json": _record("20261208-030000-cccc", "running", "fc-gone"),
        "ppo-cartpole/step-00000200/manifest.json": json.dumps(manifest).encode(),
        **{f"ppo-cartpole/step-00000200/{n}": d for n, d in ckpt.items()},
    }
    volumes: dict[str, FakeVolume] = {"ppo-checkpoints": FakeVolume(files)}
    calls = {"fc-done": FakeCall("done"), "fc-live": FakeCall("running"), "fc-gone": FakeCall("raised")}
    monkeypatch.setattr(modal.Volume, "from_name", lambda name, **kw: volumes[name])
    monkeypatch.setattr(modal.FunctionCall, "from_id", lambda call_id, **kw: calls[call_id])
    return files


def test_launch_runs_reads_the_jobs_volumes_and_asks_modal_whether_calls_live(on_modal, capsys) -> None:
    assert main(["runs", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [(r["run"], r["status"]) for r in runs] == [
        ("20261208-030000-cccc", "dead"),  # says running, but its call ended
        ("20261208-020000-bbbb", "running"),
        ("20261208-010000-aaaa", "finished")]
    assert main(["runs", "jobs/ppo.yaml"]) == 0  # the same, named by its spec
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_launch_logs_gives_the_function_call_s_logs(on_modal, capsys) -> None:
    assert main(["logs", "20261208-01"]) == 0
    assert capsys.readouterr().out == "hello from Modal\n"
    assert main(["logs", "20261208-02", "--follow"]) == 0
    assert capsys.readouterr().out == "streamed\n"


def test_launch_pull_downloads_and_verifies_a_checkpoint(on_modal, tmp_path, capsys) -> None:
    assert main(["pull", "20261208-010000", str(tmp_path / "got")]) == 0, capsys.readouterr().err
    assert (tmp_path / "got/model.safetensors").read_bytes() == b"weights" * 100
    on_modal["ppo-cartpole/step-00000200/optimizer.bin"] = b"tampered"
    assert main(["pull", "jobs/ppo.yaml", str(tmp_path / "bad")]) == 1
    assert "ppo-checkpoints:ppo-cartpole/step-00000200/optimizer.bin: does not match its manifest" \
        in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_an_unknown_run_on_modal_is_one_line(on_modal, capsys) -> None:
    assert main(["logs", "2030"]) == 1
    assert capsys.readouterr().err == ("2030: no run with this id in the Modal volumes of the specs in "
                                       "jobs/; `launch runs` lists them\n")


# -- the coordinators on Modal, offline ------------------------------------------------------

RUN = {"id": "20261208-040000-dddd", "started": 1.0, "source": "jobs/probe.yaml",
       "code": {"mode": "git", "commit": "abc123", "dirty": False}, "diff": None,
       "versions": {"launcher": "0.1.0"}, "prices": {"train": 3.9492}}


def test_a_train_only_job_s_call_keeps_the_run_record_on_its_volume(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PROBE_DIR", str(tmp_path))
    monkeypatch.setenv("LAUNCH_RUN_DIR", str(tmp_path / "run"))
    spec = load_spec(write_spec(tmp_path, probe_spec(steps=6))).spec.to_dict()
    volume = LocalVolume(tmp_path / "volume", tmp_path / "container")
    monkeypatch.setenv("LAUNCH_CHECKPOINT_DIR", str(volume.path))
    session = Session(spec, volume=volume, call_id=lambda: "fc-train")
    session.stage1()
    session.stage2()
    assert session.train(run=RUN)["status"] == "finished"
    committed = json.loads(record_path(tmp_path / "volume" / "probe", RUN["id"]).read_text())
    assert committed["status"] == "finished" and committed["coordinator"]["call_id"] == "fc-train"
    assert [(a["number"], a["outcome"], a["call_id"]) for a in committed["attempts"]] == [
        (1, "finished", "fc-train")]
    assert committed["checkpoints"]["newest"]["step"] == 6 and committed["code"]["commit"] == "abc123"
    assert committed["prices"] == {"train": 3.9492} and committed["cost_usd"] is not None  # priced
    # A retry of the same call continues the record: the attempt it finds unfinished was lost.
    rec = RunRecord.parse(record_path(tmp_path / "volume" / "probe", RUN["id"]).read_text())
    rec.status, rec.ended = "running", None
    rec.attempts[0].ended = None
    Recorder(tmp_path / "volume" / "probe", rec).save()
    volume.reload()
    session.train(run=RUN)
    again = json.loads(record_path(tmp_path / "volume" / "probe", RUN["id"]).read_text())
    assert [(a["number"], a["outcome"]) for a in again["attempts"]] == [(1, "lost"), (2, "finished")]


def test_the_pipeline_s_driver_keeps_the_record_and_hands_each_stage_the_run_id(tmp_path, monkeypatch) -> None:
    from launcher.runtime.pipeline import driver

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    shutil.copy(ROOT / "tests/recipes/probe_stages.py", tmp_path / "probe_stages.py")
    body = probe_spec(steps=3)
    body["stages"] = {"prepare": {"run": "probe_stages:prepare", "retries": 0},
                      "evaluate": {"run": "probe_stages:evaluate", "retries": 0}}
    spec = load_spec(write_spec(tmp_path, body)).spec
    spawned: list[tuple[str, dict]] = []

    class Method:
        def __init__(self, stage: str) -> None:
            self.stage = stage

        def spawn(self, **kwargs: Any) -> Any:
            spawned.append((self.stage, kwargs))
            return SimpleNamespace(object_id=f"fc-{self.stage}")

    results = {"fc-prepare": {"status": "finished", "metrics": {"rows": 10.0}},
               "fc-train": {"status": "finished", "steps": 3, "metrics": {"loss": 0.5}},
               "fc-evaluate": {"status": "finished", "metrics": {"accuracy": 0.9}}}
    caller = driver.ModalCaller({s: Method(s) for s in spec.pipeline},
                                lambda call_id: SimpleNamespace(get=lambda: results[call_id]),
                                run_id=RUN["id"])
    volume = LocalVolume(tmp_path / "volume", tmp_path / "driver")
    outcome = driver.run_pipeline(spec, caller, volume, "fc-driver", root=volume.path, run=RUN)
    assert outcome["status"] == "finished"
    assert spawned == [(s, {"lease": "fc-driver", "run_id": RUN["id"]}) for s in spec.pipeline]
    record = json.loads(record_path(tmp_path / "volume" / "probe", RUN["id"]).read_text())
    assert record["status"] == "finished" and record["coordinator"] == {"kind": "modal call", "call_id": "fc-driver"}
    assert record["calls"] == {s: [f"fc-{s}"] for s in spec.pipeline}
    assert [(a["stage"], a["outcome"]) for a in record["attempts"]] == [(s, "finished") for s in spec.pipeline]
    assert record["metrics"]["values"] == {"accuracy": 0.9}
