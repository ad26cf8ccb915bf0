"""The main job as a user runs it, and PPO's bit-exact resume after a SIGKILL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from runjob import launch_forked
from statecmp import differences, load_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def launch_ppo(volumes: Path, *sets: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "launcher.cli", "jobs/ppo.yaml", "--local", "--volumes-dir", str(volumes)]
    for item in sets:
        argv += ["--set", item]
    return subprocess.run(argv, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=600)


def test_the_main_job_solves_cartpole(tmp_path: Path) -> None:
    run = launch_ppo(tmp_path)
    assert run.returncode == 0, run.stderr
    last = re.search(r"objective\s+return_mean100 \(max\): last ([\d.]+), best ([\d.]+)", run.stderr)
    assert last is not None, run.stderr
    assert float(last[1]) >= 475.0
    assert "summary: ppo-cartpole finished" in run.stderr
    assert "updates      80 of 80" in run.stderr
    # metrics went through Accelerate's TensorBoard tracker, into this run's own folder
    assert list((Path(os.environ["LAUNCH_LOCAL_DIR"]) / "runs/ppo-cartpole").rglob("events.out.tfevents.*"))


# In the loop, the kill lands at step 6; in the background, right after the first checkpoint's
# commit (checkpoint step-4), wherever training is by then (a kill at a step could land before that commit).
# The process is what the test above runs for real: these run the CLI here, each worker forked.
@pytest.mark.parametrize("background, fault", [("false", "kill:step:6"), ("true", "kill:committed:4")],
                         ids=["sync", "async"])
def test_ppo_resume_after_sigkill_is_bit_exact(tmp_path: Path, background: str, fault: str) -> None:
    sets = ("train.steps=10", "checkpoint.every_steps=4", f"checkpoint.async={background}")
    straight = launch_forked(ROOT / "jobs/ppo.yaml", *(f"--set={s}" for s in sets), cwd=ROOT,
                             volumes=tmp_path / "a")
    assert straight.code == 0, straight.output
    killed = launch_forked(ROOT / "jobs/ppo.yaml", *(f"--set={s}" for s in sets),
                           "--set=retries.initial_delay=0s", env={"LAUNCH_FAULT": fault}, cwd=ROOT,
                           volumes=tmp_path / "b")
    assert killed.code == 0, killed.output
    assert "attempts     2 (1: transient, 2: finished)" in killed.output
    assert "resumed from step-00000004 (after update 4 of 10)" in killed.output
    final = "ppo-checkpoints/ppo-cartpole/step-00000010"
    a, b = load_checkpoint(tmp_path / "a" / final), load_checkpoint(tmp_path / "b" / final)
    assert set(a) == {"model", "optimizer.bin", "recipe-0.pt"}
    assert differences(a, b) == []
