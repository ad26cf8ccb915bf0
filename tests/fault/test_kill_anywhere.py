"""Kill anywhere: SIGKILL the local worker at seeded points, inside checkpoint writes and
commits too. Every run completes through its retries, never loads a partial checkpoint, ends
with the parameters of an uninterrupted run, and redoes at most one commit interval of work
(two with checkpoints written in the background). The same holds for preemptions, which lose
nothing.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from runjob import launch_local, probe_spec, write_spec
from statecmp import differences, load_checkpoint

STEPS, EVERY = 12, 3
PHASES = ("step", "written", "published", "committed")


def kill_points(seed: int, count: int) -> list[tuple[str, str, int]]:
    """`count` seeded (signal, phase, when) points: a step, or the n-th checkpoint's phase."""
    rng = random.Random(seed)
    points = []
    for _ in range(count):
        phase = rng.choice(PHASES)
        when = rng.randint(1, STEPS - 1) if phase == "step" else rng.randint(1, STEPS // EVERY - 1)
        points.append(("kill", phase, when))
    return points


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("clean")
    run = launch_local(write_spec(folder, probe_spec(steps=STEPS, checkpoint={"every_steps": EVERY})))
    assert run.code == 0, run.output
    return load_checkpoint(run.volume / "vol" / f"step-{STEPS:08d}")


def _executed_steps(folder: Path) -> list[int]:
    rows = (folder / "probe-rank0.jsonl").read_text().splitlines()
    return [json.loads(row)["step"] for row in rows]


# In the background (checkpoint.async: true), the checkpoint being written when the kill lands
# is lost too, and training goes on while it is written: at most one more interval is redone.
MODES = {"sync": (False, EVERY), "async": (True, 2 * EVERY)}
POINTS = kill_points(seed=2026, count=10)
# Every seeded point in the loop; each distinct one in the background (CI time).
CASES = [("sync", *p) for p in POINTS] + [("async", *p) for p in sorted(set(POINTS))]


@pytest.mark.parametrize("mode,kind,phase,when", CASES, ids=lambda v: str(v))
def test_killed_run_completes_and_matches(tmp_path: Path, uninterrupted: dict,
                                          kind: str, phase: str, when: int, mode: str) -> None:
    background, most_redone = MODES[mode]
    spec = probe_spec(steps=STEPS, checkpoint={"every_steps": EVERY, "async": background})
    run = launch_local(write_spec(tmp_path, spec), env={"LAUNCH_FAULT": f"{kind}:{phase}:{when}"})
    assert run.code == 0, run.output
    assert "1: transient, 2: finished" in run.output
    assert "skipped" not in run.output  # no partial checkpoint was ever a candidate
    final = load_checkpoint(run.volume / "vol" / f"step-{STEPS:08d}")
    assert differences(final, uninterrupted) == []
    redone = len(_executed_steps(tmp_path)) - STEPS
    assert 0 <= redone <= most_redone, f"redid {redone} steps"
    assert not [p for p in (run.volume / "vol").iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("phase,when", [("step", 4), ("step", 7), ("written", 2), ("published", 1)])
def test_preemption_drill_loses_nothing(tmp_path: Path, uninterrupted: dict, phase: str, when: int,
                                        mode: str) -> None:
    spec = probe_spec(steps=STEPS, retries=0,
                      checkpoint={"every_steps": EVERY, "async": MODES[mode][0]})
    run = launch_local(write_spec(tmp_path, spec), env={"LAUNCH_FAULT": f"int:{phase}:{when}"})
    assert run.code == 0, run.output
    assert "1: preempted, 2: finished" in run.output  # no retry spent: retries is 0
    resumed = int(run.output.split("resumed from step ")[1].split()[0])
    executed = _executed_steps(tmp_path)
    assert executed == list(range(resumed)) + list(range(resumed, STEPS))  # nothing redone
    assert f"stopped on SIGINT at step {resumed}; checkpoint committed" in run.output
    final = load_checkpoint(run.volume / "vol" / f"step-{STEPS:08d}")
    assert differences(final, uninterrupted) == []
