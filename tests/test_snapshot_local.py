"""The local snapshot, through real `launch` processes: stage 1 runs once per class, every
attempt (a retry, a preempted one) is restored from it, what a snapshot cannot carry is
refused, the whole process tree dies with `launch`, and the random state each attempt starts
from is the one a fresh worker would have.

Synchronisation is by polling for what the run writes, with a deadline, never by sleeping.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from runjob import checkpoints, launch_local, probe_spec, write_spec
from test_signals import alive, parent_of, rows, start_launch, wait_for

# Counts stage 1 (the recipe built) per process, and draws from every RNG a recipe may use.
COUNTING = """
import os
import random
from pathlib import Path

import numpy
import torch

from probe_recipe import Probe as Base


class Probe(Base):
    def __init__(self, config, seed):
        super().__init__(config, seed)
        with open(Path(os.environ["PROBE_DIR"]) / "stage1.log", "a") as f:
            f.write(f"{os.getpid()}\\n")

    def train_step(self, step):
        out = super().train_step(step)
        draws = [random.random(), float(numpy.random.rand()), float(torch.rand(1))]
        with open(self.out / "draws.jsonl", "a") as f:
            f.write(f"{draws}\\n")
        return out
"""

CUDA = """
import torch

from probe_recipe import Probe as Base


class Probe(Base):
    def __init__(self, config, seed):
        super().__init__(config, seed)
        # What a stage 1 that calls torch.cuda leaves, simulated where there is no GPU.
        torch.cuda._initialized = True
"""

THREAD = """
import threading

from probe_recipe import Probe as Base

STOP = threading.Event()


class Probe(Base):
    def __init__(self, config, seed):
        super().__init__(config, seed)
        threading.Thread(target=STOP.wait, name="prefetcher", daemon=True).start()
"""

SOCKET = """
import socket

from probe_recipe import Probe as Base


class Probe(Base):
    def __init__(self, config, seed):
        super().__init__(config, seed)
        self.connection = socket.socket()
"""


def _job(tmp_path: Path, source: str, snapshot: str = "cpu", **sections) -> Path:
    spec = write_spec(tmp_path, probe_spec(train={"recipe": "user_recipe:Probe", **sections.pop("train", {})},
                                           snapshot=snapshot, **sections))
    (tmp_path / "user_recipe.py").write_text(source)
    return spec


def _stage1s(folder: Path) -> list[str]:
    return (folder / "stage1.log").read_text().split()


def _attempts(output: str) -> str:
    return next(line for line in output.splitlines() if "attempts " in line).split("attempts", 1)[1].strip()


@pytest.mark.parametrize("snapshot,stage1s", [("cpu", 1), ("none", 2)])
def test_a_retry_is_restored_from_the_snapshot_and_skips_stage_1(tmp_path: Path, snapshot: str,
                                                                 stage1s: int) -> None:
    run = launch_local(_job(tmp_path, COUNTING, snapshot), env={"LAUNCH_FAULT": "kill:step:4"})
    assert run.code == 0, run.output
    assert _attempts(run.output) == "2 (1: transient, 2: finished)"
    assert "resumed from step-00000003" in run.output
    assert len(_stage1s(tmp_path)) == stage1s  # with `none`, each attempt is a fresh worker
    pids = {r["pid"] for r in rows(tmp_path)}
    assert len(pids) == 2  # every attempt its own process, restored or not
    if snapshot == "cpu":
        assert not pids & set(map(int, _stage1s(tmp_path)))  # stage 1 ran in neither


def test_a_preempted_attempt_restarts_from_the_snapshot(tmp_path: Path) -> None:
    # 10 s of updates: the preemption after 3 s lands in the loop however fast the start was.
    spec = _job(tmp_path, COUNTING, train={"steps": 200, "config": {"delay_s": 0.05}}, retries=0)
    run = launch_local(spec, "--preempt-after", "3")
    assert run.code == 0, run.output
    assert _attempts(run.output) == "2 (1: preempted, 2: finished)"
    assert len(_stage1s(tmp_path)) == 1


@pytest.mark.parametrize("source,said", [
    (CUDA, "snapshot: cpu: stage 1 of train initialized CUDA, and Modal takes a CPU memory snapshot "
           "without a GPU: it fails there. Move device work to stage 2 (the recipe's setup), or use "
           "snapshot: gpu"),
    (THREAD, "snapshot: cpu: stage 1 of train started a thread (prefetcher) still running at the "
             "snapshot; a restored container (here: a fork of the snapshot) has none of them. Start it "
             "after the restore (stage 2), or use snapshot: none"),
    (SOCKET, "a memory snapshot does not carry live connections across a restore. Open it after the "
             "restore (stage 2), or use snapshot: none"),
], ids=["cuda", "thread", "socket"])
def test_a_stage_1_that_leaves_what_a_snapshot_cannot_carry_is_refused(tmp_path: Path, source: str,
                                                                       said: str) -> None:
    run = launch_local(_job(tmp_path, source))
    assert run.code == 1
    assert _attempts(run.output) == "1 (1: permanent)"  # no retry can fix it
    assert said in run.output
    assert checkpoints(tmp_path / "volumes" / "vol" / "probe") == []


@pytest.mark.parametrize("source", [THREAD, SOCKET], ids=["thread", "socket"])
def test_without_a_snapshot_the_same_stage_1_runs(tmp_path: Path, source: str) -> None:
    run = launch_local(_job(tmp_path, source, snapshot="none"))
    assert run.code == 0, run.output


def _draws(folder: Path) -> list[str]:
    return (folder / "draws.jsonl").read_text().splitlines()


def test_attempts_from_one_snapshot_start_from_the_seed_s_random_state(tmp_path: Path) -> None:
    # Killed in stage 2, before any update: the retry, restored from the same snapshot, draws
    # exactly what a fresh worker with that seed draws, and another seed draws otherwise.
    runs = {}
    for name, snapshot, seed, fault in [("fresh", "none", 1, None), ("retried", "cpu", 1, "kill:stage2:1"),
                                        ("restored", "cpu", 1, None), ("other", "cpu", 2, None)]:
        folder = tmp_path / name
        env = {"LAUNCH_FAULT": fault} if fault else None
        run = launch_local(_job(folder, COUNTING, snapshot, train={"seed": seed, "steps": 3}), env=env)
        assert run.code == 0, run.output
        runs[name] = (_draws(folder), [r["loss"] for r in rows(folder)])
    assert runs["retried"] == runs["fresh"] == runs["restored"]
    assert runs["other"][0] != runs["fresh"][0] and runs["other"][1] != runs["fresh"][1]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_killed_launch_takes_the_snapshot_and_its_attempt_with_it(tmp_path: Path) -> None:
    spec = probe_spec(steps=400, train={"config": {"delay_s": 0.05}}, snapshot="cpu")
    launch = start_launch(tmp_path, spec)
    attempt = wait_for("the attempt to train", lambda: len(rows(tmp_path)) >= 4 and rows(tmp_path)[0]["pid"])
    snapshot = parent_of(attempt)
    zygote = parent_of(snapshot)
    assert parent_of(zygote) == launch.pid  # launch -> worker (zygote) -> snapshot -> attempt
    os.kill(launch.pid, signal.SIGKILL)
    launch.wait()
    wait_for("every process to die", lambda: not any(alive(p) for p in (zygote, snapshot, attempt)),
             deadline_s=30)
    assert len(rows(tmp_path)) < 400
    assert json.loads((tmp_path / "probe-rank0.jsonl").read_text().splitlines()[0])["pid"] == attempt


def test_a_gpu_snapshot_with_cuda_state_runs_each_attempt_in_a_snapshot_of_its_own(tmp_path: Path) -> None:
    # A fork cannot carry CUDA state (simulated here): the attempt runs in the snapshot process,
    # which is then spent, and the retry takes a new snapshot (the imports are still shared).
    source = COUNTING.replace("        super().__init__(config, seed)\n",
                              "        super().__init__(config, seed)\n        torch.cuda._initialized = True\n", 1)
    spec = _job(tmp_path, source, "gpu", compute={"gpu": "L4"})
    run = launch_local(spec, env={"LAUNCH_FAULT": "kill:step:4"})
    assert run.code == 0, run.output
    assert _attempts(run.output) == "2 (1: transient, 2: finished)"
    snapshots = list(map(int, _stage1s(tmp_path)))
    assert len(snapshots) == 2
    assert {r["pid"] for r in rows(tmp_path)} == set(snapshots)
