"""Kill anywhere: SIGKILL the local worker at every point of a short job, each in turn.

Every kill point (launcher/runtime/faults.py), each index of it: the stage boundaries, the
lease, every update, and each checkpoint's written / published / committed phases, then the
end of the run. In every case the run completes through its retries, resumes from the newest
*committed* checkpoint (never a partial or uncommitted one), ends with the parameters of an
uninterrupted run bit for bit, loses no checkpoint, and redoes at most one commit interval.

The workers are forked (forkrun.py), so the whole matrix stays affordable in CI; bench/faults.py
runs a longer job's matrix through real `launch` processes.

Each case runs twice: with checkpoints written in the training loop, and in the background
(`checkpoint.async`), where the checkpoint being written when the kill lands may be lost too
while training went on: the retry may resume one checkpoint earlier and redo one more interval.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from forkrun import run_forked
from runjob import checkpoints, probe_spec, write_spec
from statecmp import differences, load_checkpoint

from launcher.runtime.faults import POINTS

STEPS, EVERY = 9, 3


def kill_points(steps: int, every: int) -> list[tuple[str, int]]:
    """Every (point, index) a run of `steps` updates, checkpointing every `every`, passes."""
    saves = sorted({*range(every, steps + 1, every), steps})
    by_point = {"step": range(1, steps + 1), "written": saves, "published": saves, "committed": saves}
    return [(point, n) for point in POINTS for n in by_point.get(point, (1,))]


def committed_before(point: str, n: int, steps: int, every: int) -> int:
    """The newest checkpoint committed when the kill lands: where the retry must resume."""
    if point in ("stage1", "stage2", "lease"):
        return 0
    if point in ("released", "exit"):
        return steps
    if point == "committed":
        return n
    done = n - 1  # after update n (step), or inside its checkpoint: that one is not committed
    return done - done % every


MODES = {"sync": False, "async": True}


def spec(steps: int = STEPS, every: int = EVERY, background: bool = False) -> dict:
    # keep_last 2 of 3 checkpoints: retention (after each commit) is part of every case too
    return probe_spec(steps=steps, checkpoint={"every_steps": every, "keep_last": 2,
                                               "async": background})


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("clean")
    run = run_forked(write_spec(folder, spec()))
    assert run.code == 0, run.output
    return load_checkpoint(run.volume / "vol" / "probe" / f"step-{STEPS:08d}")


def executed_updates(folder: Path) -> list[int]:
    rows = (folder / "probe-rank0.jsonl").read_text().splitlines()
    return [json.loads(row)["step"] for row in rows]


def test_the_matrix_holds_every_point_and_index() -> None:
    points = kill_points(STEPS, EVERY)
    assert len(points) == len(set(points)) == 3 + STEPS + 3 * 3 + 2
    assert {p for p, _ in points} == set(POINTS)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("point,n", kill_points(STEPS, EVERY), ids=lambda v: str(v))
def test_killed_anywhere_the_run_completes_as_if_never_killed(tmp_path: Path, uninterrupted: dict,
                                                              point: str, n: int, mode: str) -> None:
    background = MODES[mode]
    run = run_forked(write_spec(tmp_path, spec(background=background)), f"kill:{point}:{n}")
    assert run.code == 0, run.output
    assert "attempts     2 (1: transient, 2: finished)" in run.output
    assert "skipped" not in run.output  # no partial checkpoint was ever a candidate
    retry = run.output.split("attempt 1: transient")[1]
    resumed = committed_before(point, n, STEPS, EVERY)
    if background and resumed and f"resumed from step-{resumed:08d}" not in retry:
        resumed -= EVERY  # that one was still being written in the background
    expected = f"resumed from step-{resumed:08d}" if resumed else "no checkpoint: starting fresh"
    assert expected in retry, run.output
    job = run.volume / "vol" / "probe"
    assert differences(load_checkpoint(job / f"step-{STEPS:08d}"), uninterrupted) == []
    assert checkpoints(job) == ["step-00000006", "step-00000009"]  # none lost, none left over
    redone = len(executed_updates(tmp_path)) - STEPS
    assert 0 <= redone <= (2 * EVERY if background else EVERY), f"redid {redone} updates"
    assert sorted(p.name for p in job.iterdir()) == ["runs", *checkpoints(job)]  # no leftover, no lease


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("point,n", [("step", 4), ("step", 7), ("written", 6), ("published", 3),
                                     ("stage1", 1)])
def test_a_preemption_anywhere_loses_nothing(tmp_path: Path, uninterrupted: dict, point: str, n: int,
                                             mode: str) -> None:
    run = run_forked(write_spec(tmp_path, {**spec(background=MODES[mode]), "retries": 0}),
                     f"int:{point}:{n}")
    assert run.code == 0, run.output
    assert "attempts     2 (1: preempted, 2: finished)" in run.output  # no retry spent: retries 0
    executed = executed_updates(tmp_path)
    assert executed == list(range(STEPS)), executed  # nothing redone
    final = load_checkpoint(run.volume / "vol" / "probe" / f"step-{STEPS:08d}")
    assert differences(final, uninterrupted) == []
