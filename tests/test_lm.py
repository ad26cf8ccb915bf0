"""The language-model recipe (launcher/recipes/lm.py, jobs/lm.yaml) with a tiny config: its
prepare stage, its schedule, one shard per process, a kill at every point of a run resuming
bit for bit (data order included), and a two-process resume that is bit-identical too.

Runs go through the real CLI: in this process with each worker forked (runjob.launch_forked),
in a subprocess for two processes. The real job's figures come from `launch jobs/lm.yaml
--local` (README); no test here times anything."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from runjob import launch_forked, launch_local
from statecmp import differences, load_checkpoint

from launcher.recipes import lm
from launcher.runtime.faults import POINTS
from launcher.runtime.pipeline.stages import StageContext

ROOT = Path(__file__).resolve().parent.parent
STEPS, EVERY = 6, 2
TINY = {"block_size": 16, "d_model": 16, "n_layer": 1, "n_head": 2, "batch_size": 4,
        "warmup_steps": 2, "decay_steps": STEPS, "val_windows": 8}


def tiny_spec(folder: Path, steps: int = STEPS, **train: object) -> Path:
    spec = {
        "version": 1, "name": "lm",
        "retries": {"max_retries": 2, "initial_delay": "0s"},
        "checkpoint": {"volume": "vol", "every_steps": EVERY, "keep_last": 2, "async": False},
        "train": {"recipe": "launcher.recipes.lm:LM", "steps": steps, "seed": 3, "log_every": 1,
                  "tracker": "none", "gradient_accumulation_steps": 2, "config": TINY, **train},
        "stages": {"prepare": {"run": "launcher.recipes.lm:prepare", "retries": 0,
                               "config": {"max_bytes": 200_000, "val_fraction": 0.5}}},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def final_state(run_volume: Path, step: int = STEPS, ranks: int = 1) -> dict:
    path = run_volume / "vol" / "lm" / f"step-{step:08d}"
    state = load_checkpoint(path)
    for rank in range(1, ranks):
        state[f"recipe-{rank}.pt"] = torch.load(path / f"recipe-{rank}.pt", weights_only=False)
    return state


def prepared(tmp_path: Path, **config: object) -> tuple[dict, dict]:
    lines: list[str] = []
    ctx = StageContext(stage="prepare", config=config, seed=0, data_dir=tmp_path, log=lines.append)
    metrics = lm.prepare(ctx)
    assert lines and "validation unigram entropy" in lines[0]
    return metrics, lm.load_data(tmp_path)[0]


def test_prepare_is_deterministic_holds_out_whole_files_and_records_the_entropy(tmp_path: Path) -> None:
    metrics, data = prepared(tmp_path / "a", max_bytes=200_000, val_fraction=0.5)
    _, again = prepared(tmp_path / "b", max_bytes=200_000, val_fraction=0.5)
    assert differences(data, again) == []
    assert metrics["train_bytes"] + metrics["val_bytes"] == 200_000
    assert 0 < metrics["val_bytes"] < metrics["train_bytes"]
    counts = torch.bincount(data["val"].long(), minlength=256).double()
    p = counts[counts > 0] / counts.sum()
    assert metrics["val_unigram_entropy_nats"] == pytest.approx(float(-(p * p.log()).sum()))
    assert metrics["val_unigram_entropy_bits"] == pytest.approx(metrics["val_unigram_entropy_nats"] / math.log(2))
    # a file's split depends on its path alone: a larger cap keeps the same files where they were
    files = lm.stdlib_files(Path(lm.sysconfig.get_paths()["stdlib"]))
    assert files and not any(part in lm.SKIPPED for f in files for part in f.parts[-2:-1])
    assert lm.held_out("json/decoder.py", 0.2) == lm.held_out("json/decoder.py", 0.2)


def test_prepare_refuses_unknown_config_and_a_cap_too_small_to_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown keys: max_byte"):
        prepared(tmp_path, max_byte=10)
    with pytest.raises(ValueError, match="too little source .* raise max_bytes or val_fraction"):
        prepared(tmp_path, max_bytes=8192, val_fraction=0.01)


def test_the_schedule_warms_up_then_decays_by_cosine_to_the_floor() -> None:
    f = lm.schedule(4, 20, 0.1)
    assert [f(u) for u in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(12) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(20) == pytest.approx(0.1) and f(50) == pytest.approx(0.1)
    assert all(f(u) >= f(u + 1) for u in range(4, 30))


def test_each_process_reads_its_own_shard_and_draws_its_own_batches(tmp_path: Path) -> None:
    prepared(tmp_path, max_bytes=200_000, val_fraction=0.5)
    shards, batches, vals = [], [], []
    for rank in (0, 1):
        recipe = lm.LM(TINY, seed=3)
        recipe.data_dir = tmp_path
        acc = SimpleNamespace(process_index=rank, num_processes=2, device=torch.device("cpu"),
                              prepare=lambda *objs: objs)
        recipe.setup(acc)
        shards.append(recipe.shard)
        batches.append(recipe._batch(5, 1))
        vals.append(recipe.val)
        assert torch.equal(recipe._batch(5, 1), batches[-1])  # a function of (seed, update, micro, rank)
    train = lm.load_data(tmp_path)[0]["train"]
    half = len(train) // 2
    assert torch.equal(shards[0], train[:half]) and torch.equal(shards[1], train[half:2 * half])
    assert not torch.equal(batches[0], batches[1])
    assert len(vals[0]) + len(vals[1]) == TINY["val_windows"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("clean")
    run = launch_forked(tiny_spec(folder))
    assert run.code == 0, run.output
    return final_state(run.volume)


def kill_points() -> list[tuple[str, int]]:
    """A kill at each kind of point: the stage boundaries, the lease, updates on and between
    checkpoints (a retry redoes updates: their batches must be drawn again the same), each
    phase of a checkpoint, and the end. (Every index of every point passes too: the whole
    matrix of tests/fault/test_kill_anywhere.py, about twice as long.)"""
    return [(point, n) for point in POINTS for n in {"step": (1, 3, 5), "written": (4,),
                                                      "published": (2,), "committed": (4,)}.get(point, (1,))]


@pytest.mark.parametrize("point,n", kill_points(), ids=lambda v: str(v))
def test_a_kill_anywhere_resumes_bit_for_bit(tmp_path: Path, uninterrupted: dict, point: str, n: int) -> None:
    run = launch_forked(tiny_spec(tmp_path), env={"LAUNCH_FAULT": f"kill:{point}:{n}"})
    assert run.code == 0, run.output
    assert "1: transient" in run.output, run.output  # the kill landed, and the retry finished
    state = final_state(run.volume)
    assert {"model", "optimizer.bin", "recipe-0.pt"} <= set(state)
    assert state["recipe-0.pt"]["updates"] == STEPS
    assert state["recipe-0.pt"]["scheduler"]["last_epoch"] == STEPS
    assert differences(state, uninterrupted) == []


def test_two_processes_resume_bit_for_bit(tmp_path: Path) -> None:
    straight = launch_local(tiny_spec(tmp_path / "straight"), "--processes", "2")
    assert straight.code == 0, straight.output
    assert ", 2 process(es)" in straight.output
    killed = launch_local(tiny_spec(tmp_path / "killed"), "--processes", "2",
                          env={"LAUNCH_FAULT": "kill:step:3"})
    assert killed.code == 0, killed.output
    assert "resumed from step-00000002" in killed.output, killed.output
    a, b = final_state(straight.volume, ranks=2), final_state(killed.volume, ranks=2)
    assert differences(a, b) == []
    one = launch_forked(tiny_spec(tmp_path / "one"))  # two shards train another model than one
    assert one.code == 0, one.output
    assert differences(final_state(one.volume)["model"], a["model"]) != []


def test_the_job_and_its_gpu_variant_check() -> None:
    from launcher.load import load_spec

    cpu = load_spec(ROOT / "jobs/lm.yaml").spec
    gpu = load_spec(ROOT / "jobs/lm-gpu.yaml").spec
    assert cpu.train.mixed_precision == "no" and gpu.train.mixed_precision == "bf16"
    assert cpu.train.gradient_accumulation_steps > 1
    assert cpu.train.config["decay_steps"] == cpu.train.steps
    assert gpu.train.config["decay_steps"] == gpu.train.steps
    assert [s.name for s in cpu.stages] == ["prepare", "evaluate"]
