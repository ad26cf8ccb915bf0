"""A pipeline's stages work under the driver's lease of the job, in-process, as Modal containers
would: train, prepare and evaluate given the driver's call id join its lease (never refused by
it, never releasing it); a stage called on its own takes the lease for itself, and is refused
while another run holds the job."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from runjob import RECIPES, probe_spec, write_spec

from launcher.load import load_spec
from launcher.runtime.lease import Lease
from launcher.runtime.pipeline.stage_session import StageSession
from launcher.runtime.storage.volume import LocalVolume
from launcher.runtime.train.session import Session

HELD = "probe: already running on volume vol: call fc-driver ("


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PROBE_DIR", str(tmp_path))
    monkeypatch.setenv("LAUNCH_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("LAUNCH_PROCESSES", "1")
    shutil.copy(RECIPES / "probe_stages.py", tmp_path / "probe_stages.py")
    body = probe_spec(steps=3)
    body["stages"] = {"prepare": {"run": "probe_stages:prepare", "retries": 0},
                      "evaluate": {"run": "probe_stages:evaluate", "retries": 0}}
    return load_spec(write_spec(tmp_path, body)).spec.to_dict()


def container(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> LocalVolume:
    """A container's working copy of the volume (tmp_path/volume)."""
    volume = LocalVolume(tmp_path / "volume", tmp_path / name)
    monkeypatch.setenv("LAUNCH_CHECKPOINT_DIR", str(volume.path))
    return volume


def lease_of(tmp_path: Path) -> dict[str, Any] | None:
    path = tmp_path / "volume" / "probe" / "lease.json"
    return json.loads(path.read_text()) if path.is_file() else None


def driver_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The pipeline's driver (call fc-driver) took the job's lease, as Driver.run does."""
    volume = container(tmp_path, monkeypatch, "driver")
    Lease(volume.path / "probe", volume, job="probe", volume_name="vol", every_s=None,
          timeout_s=3600, stale_s=3600).acquire("fc-driver")
    return lease_of(tmp_path)


def stage(spec: dict, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str) -> StageSession:
    session = StageSession(spec, name, volume=container(tmp_path, monkeypatch, call), call_id=lambda: call)
    session.stage1()
    session.stage2()
    return session


def train(spec: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str) -> Session:
    session = Session(spec, volume=container(tmp_path, monkeypatch, call), call_id=lambda: call)
    session.stage1()
    session.stage2()
    return session


def test_every_stage_works_under_the_drivers_lease_and_leaves_it_to_the_driver(spec, tmp_path, monkeypatch) -> None:
    before = driver_holds(tmp_path, monkeypatch)
    assert stage(spec, "prepare", tmp_path, monkeypatch, "fc-prepare").run(lease="fc-driver")["status"] == "finished"
    assert train(spec, tmp_path, monkeypatch, "fc-train").train(lease="fc-driver")["status"] == "finished"
    assert stage(spec, "evaluate", tmp_path, monkeypatch, "fc-eval").run(lease="fc-driver")["status"] == "finished"
    after = lease_of(tmp_path)  # still the driver's, with its limit: it releases it at the end
    assert (after["call_id"], after["since"], after["stale_after_s"]) == ("fc-driver", before["since"], 3600.0)


@pytest.mark.parametrize("name", ["prepare", "evaluate"])
def test_a_stage_called_on_its_own_is_refused_while_a_driver_holds_the_job(spec, tmp_path, monkeypatch,
                                                                             name: str) -> None:
    if name == "evaluate":  # something to evaluate
        assert train(spec, tmp_path, monkeypatch, "fc-0").train()["status"] == "finished"
    lease = driver_holds(tmp_path, monkeypatch)
    result = stage(spec, name, tmp_path, monkeypatch, "fc-other").run()
    assert (result["status"], result["error"].startswith(HELD)) == ("permanent", True), result
    assert lease_of(tmp_path) == lease  # untouched
    assert not (tmp_path / "volume" / "probe" / "stages" / name).exists()  # it ran nothing


def test_a_train_given_no_driver_is_refused_while_a_driver_holds_the_job(spec, tmp_path, monkeypatch) -> None:
    driver_holds(tmp_path, monkeypatch)
    result = train(spec, tmp_path, monkeypatch, "fc-other").train()
    assert (result["status"], result["error"].startswith(HELD)) == ("permanent", True), result


def test_a_stage_called_on_its_own_takes_the_lease_for_its_call_and_releases_it(spec, tmp_path, monkeypatch) -> None:
    seen: list[Any] = []
    session = stage(spec, "prepare", tmp_path, monkeypatch, "fc-prepare")
    function = session.function
    session.function = lambda ctx: (seen.append(lease_of(tmp_path)["call_id"]), function(ctx))[1]
    assert session.run()["status"] == "finished"
    assert seen == ["fc-prepare"] and lease_of(tmp_path) is None


def test_a_stage_s_failed_reload_is_the_volume_s_as_train_s_is(spec, tmp_path, monkeypatch) -> None:
    """Both sessions reload through one guarded path: a reload that fails is a VolumeError naming
    the volume (retried), never the stage's own failure."""
    from launcher.runtime.failures import VolumeError

    for session in (StageSession(spec, "prepare", volume=container(tmp_path, monkeypatch, "p")),
                    Session(spec, volume=container(tmp_path, monkeypatch, "t"))):
        session.stage1()
        monkeypatch.setattr(session.volume, "reload", _fails)
        with pytest.raises(VolumeError, match=r"^checkpoint.volume vol: reload failed: OSError: "):
            session.stage2()
        assert session.init_error is None  # retried, not kept as permanent


def _fails() -> None:
    raise OSError(5, "Input/output error")  # what Modal's reload may raise: not a VolumeError
