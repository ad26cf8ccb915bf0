"""The digits pipeline as a user runs it: `launch jobs/digits.yaml --local` (prepare on CPU,
train, evaluate), its test accuracy, a rerun that redoes nothing, and a bit-exact resume.

The CLI runs in this process, with each worker forked (runjob.launch_forked): the process itself
is what tests/test_main_job.py and tests/test_signals.py run for real."""

from __future__ import annotations

import re
from pathlib import Path

from runjob import Run, launch_forked
from statecmp import differences, load_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def launch_digits(volumes: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    return launch_forked(ROOT / "jobs/digits.yaml", *args, env=env, cwd=ROOT, volumes=volumes)


def accuracy(stderr: str) -> float:
    found = re.search(r"^  evaluate +finished.*test_accuracy ([\d.]+)", stderr, re.MULTILINE)
    assert found is not None, stderr
    return float(found[1])


def test_the_digits_pipeline_reaches_097_and_a_rerun_redoes_nothing(tmp_path: Path) -> None:
    first = launch_digits(tmp_path)
    assert first.code == 0, first.output
    assert re.search(r"^  prepare +finished.*train_examples 1437", first.output, re.MULTILINE), first.output
    assert accuracy(first.output) >= 0.97
    assert "updates      400 of 400" in first.output

    second = launch_digits(tmp_path)
    assert second.code == 0, second.output
    assert "prepare: skipped, finished earlier with the same inputs" in second.output
    assert "resumed from step-00000400" in second.output
    assert "checkpoints  0 written" in second.output
    assert accuracy(second.output) == accuracy(first.output)  # the same checkpoint, evaluated again


def test_digits_resume_after_sigkill_is_bit_exact(tmp_path: Path) -> None:
    sets = ("--set", "train.steps=50", "--set", "checkpoint.every_steps=20")
    straight = launch_digits(tmp_path / "a", *sets)
    assert straight.code == 0, straight.output
    # Checkpoints are saved in the background here: a kill at a step could land before step-20's
    # commit, so it lands right after that commit (wherever training is by then).
    killed = launch_digits(tmp_path / "b", *sets, "--set", "retries.initial_delay=0s",
                           env={"LAUNCH_FAULT": "kill:committed:20"})
    assert killed.code == 0, killed.output
    assert "attempts     2 (1: transient, 2: finished)" in killed.output
    assert "resumed from step-00000020" in killed.output
    a, b = (next((tmp_path / run).rglob("step-00000050")) for run in ("a", "b"))
    state_a, state_b = load_checkpoint(a), load_checkpoint(b)
    assert {"model", "optimizer.bin", "recipe-0.pt"} <= set(state_a)
    assert differences(state_a, state_b) == []
