"""Fault injection is a test tool: nothing a spec controls can reach it.

The spec's `env:` may not name LAUNCH_* (validation refuses it); besides that, the supervisor
builds the worker's environment so that the spec's entries cannot set a runtime name, and only
the local worker arms fault injection: the generated Modal app never does, whatever its
environment holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from runjob import probe_spec, write_spec

from launcher.backends.workerproc import worker_env
from launcher.load import load_spec
from launcher.render import CodeSource, render
from launcher.runtime import faults
from launcher.spec.model import JobSpec

MODAL_PATH = """
import importlib.util, sys
from pathlib import Path
from launcher.runtime.storage.volume import LocalVolume
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)
app.volume = LocalVolume(Path(sys.argv[2]), Path(sys.argv[3]))  # Modal's Volume needs an account
print("RESULT", app.Trainer().train.local(steps=2))  # Modal's own local path: enter hooks, train
"""


def test_the_generated_app_never_arms_fault_injection(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = load_spec(write_spec(tmp_path, probe_spec(steps=2))).spec
    app = tmp_path / "app.py"
    app.write_text(render(spec, "job.yaml", CodeSource("local")))
    env = {**os.environ, "LAUNCH_FAULT": "kill:step:1", "LAUNCH_ATTEMPT": "1",  # as a secret might
           "LAUNCH_CHECKPOINT_DIR": str(tmp_path / "mount"), "LAUNCH_RUN_DIR": str(tmp_path / "run"),
           "PROBE_DIR": str(tmp_path), "LAUNCH_REPO_ROOT": str(Path(__file__).resolve().parent.parent),
           "PYTHONPATH": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", MODAL_PATH, str(app), str(tmp_path / "volume"),
                          str(tmp_path / "mount")], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr  # not killed at update 1
    assert "'status': 'finished', 'steps': 2" in run.stdout
    assert "faults" not in app.read_text()


def test_the_spec_s_env_cannot_set_a_runtime_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = load_spec(write_spec(tmp_path, probe_spec())).spec.to_dict()
    # As if validation had let them through: the supervisor drops them all the same.
    data["env"] = {"LAUNCH_FAULT": "kill:step:1", "LAUNCH_CHECKPOINT_DIR": "/elsewhere", "MY_SETTING": "1"}
    spec = JobSpec.from_dict(data)
    monkeypatch.delenv("LAUNCH_FAULT", raising=False)
    # The worker's environment from its start; the run's folders come later, in its go.
    env = worker_env(spec.env, processes=1, attempt=1, debug=False)
    assert "LAUNCH_FAULT" not in env and "LAUNCH_CHECKPOINT_DIR" not in env
    assert env["MY_SETTING"] == "1"
    monkeypatch.setenv("LAUNCH_FAULT", "kill:step:2")  # a test's own, from the supervisor's env
    assert worker_env(spec.env, processes=1, attempt=1, debug=False)["LAUNCH_FAULT"] == "kill:step:2"


@pytest.fixture
def disarmed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The module-global fault, unarmed now and again after the test, whatever it armed."""
    monkeypatch.setattr(faults, "_armed", None)


def test_faults_fire_only_when_armed_and_only_in_the_attempt_asked_for(monkeypatch, disarmed) -> None:
    monkeypatch.setenv("LAUNCH_FAULT", "enospc:written:6")
    faults.arm(None)
    faults.point("written", 6)  # not armed: the environment alone does nothing
    faults.arm("enospc:written:6", attempt="2", fault_attempt="1")
    faults.point("written", 6)
    faults.arm("enospc:written:6", attempt="1", fault_attempt="1")
    faults.point("written", 3)
    with pytest.raises(OSError, match="No space left on device"):
        faults.point("written", 6)


def test_an_unknown_fault_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^not a fault: 'kill:writen:1' \(KIND:POINT:N"):
        faults.arm("kill:writen:1")
