"""The digits pipeline as a user runs it: `launch jobs/digits.yaml --local` (prepare on CPU,
train, evaluate), its test accuracy, a rerun that redoes nothing, and a bit-exact resume."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from statecmp import differences, load_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def launch_digits(volumes: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "launcher.cli", "jobs/digits.yaml", "--local", "--volumes-dir",
            str(volumes), *args]
    return subprocess.run(argv, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=600)


def accuracy(stderr: str) -> float:
    found = re.search(r"^  evaluate +finished.*test_accuracy ([\d.]+)", stderr, re.MULTILINE)
    assert found is not None, stderr
    return float(found[1])


def test_the_digits_pipeline_reaches_097_and_a_rerun_redoes_nothing(tmp_path: Path) -> None:
    first = launch_digits(tmp_path)
    assert first.returncode == 0, first.stderr
    assert re.search(r"^  prepare +finished.*train_examples 1437", first.stderr, re.MULTILINE), first.stderr
    assert accuracy(first.stderr) >= 0.97
    assert "updates      400 of 400" in first.stderr

    second = launch_digits(tmp_path)
    assert second.returncode == 0, second.stderr
    assert "prepare: skipped, finished earlier with the same inputs" in second.stderr
    assert "resumed from step-00000400" in second.stderr
    assert "checkpoints  0 written" in second.stderr
    assert accuracy(second.stderr) == accuracy(first.stderr)  # the same checkpoint, evaluated again


def test_digits_resume_after_sigkill_is_bit_exact(tmp_path: Path) -> None:
    sets = ("--set", "train.steps=50", "--set", "checkpoint.every_steps=20")
    straight = launch_digits(tmp_path / "a", *sets)
    assert straight.returncode == 0, straight.stderr
    killed = launch_digits(tmp_path / "b", *sets, "--set", "retries.initial_delay=0s",
                           env={"LAUNCH_FAULT": "kill:step:30"})
    assert killed.returncode == 0, killed.stderr
    assert "attempts     2 (1: transient, 2: finished)" in killed.stderr
    assert "resumed from step-00000020" in killed.stderr
    a, b = (next((tmp_path / run).rglob("step-00000050")) for run in ("a", "b"))
    state_a, state_b = load_checkpoint(a), load_checkpoint(b)
    assert {"model", "optimizer.bin", "recipe-0.pt"} <= set(state_a)
    assert differences(state_a, state_b) == []
