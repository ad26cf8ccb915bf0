"""A checkpoint is loaded only by the run it belongs to, and never overwritten: through real
`launch --local` processes (tests/runjob.py), compared bit for bit (tests/statecmp.py)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from runjob import RECIPES, checkpoints, launch_forked, launch_local, probe_spec, write_spec
from statecmp import differences, load_checkpoint
from test_pipeline_local import pipeline_spec, ran
from test_pipeline_local import write as write_pipeline


def digests(folder: Path) -> dict[str, str]:
    """Every file under `folder` (a job's folder, a checkpoint) by its path, with its sha256."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def steps_in(job: Path) -> dict[str, dict[str, str]]:
    return {name: digests(job / name) for name in checkpoints(job)}


def as_an_older_launcher_wrote_it(ckpt: Path) -> None:
    """Recipe state holding NumPy's generator state (refused now at the first save), the
    manifest updated to match: the checkpoint verifies, but no weights-only load reads it."""
    state = ckpt / "recipe-0.pt"
    torch.save({**torch.load(state, weights_only=True), "numpy_rng": np.random.get_state()}, state)
    manifest = json.loads((ckpt / "manifest.json").read_text())
    data = state.read_bytes()
    manifest["files"]["recipe-0.pt"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (ckpt / "manifest.json").write_text(json.dumps(manifest))


def rng_spec(folder: Path, recipe: str, steps: int, **sections: Any) -> Path:
    """A spec of one of tests/recipes/rng_recipes.py, beside a copy of it."""
    spec = write_spec(folder, probe_spec(steps=steps, train={"recipe": f"rng_recipes:{recipe}"},
                                         **sections))
    shutil.copy(RECIPES / "rng_recipes.py", folder / "rng_recipes.py")
    return spec


def shuffled_spec(folder: Path, steps: int) -> Path:
    """A spec of the probe recipe drawing its rows with Python's global `random`."""
    return rng_spec(folder, "Shuffled", steps)


def state_of(folder: Path, step: int) -> dict:
    """A checkpoint's tensors and every process's RNG states (Python's `random` included)."""
    path = folder / "volumes" / "vol" / "probe" / f"step-{step:08d}"
    state = load_checkpoint(path)
    for rank in (0, 1):
        state[f"random_states_{rank}"] = (path / f"random_states_{rank}.pkl").read_bytes()
    return state


def test_a_recipe_drawing_from_random_is_reproducible_and_resumable_with_two_processes(
        tmp_path: Path) -> None:
    # Python reseeds its global generator in each forked worker: the workers must start from
    # the seeded state, or two runs of one spec differ, and so does a resumed one.
    straight = launch_local(shuffled_spec(tmp_path / "straight", steps=6), "--processes", "2")
    assert straight.code == 0, straight.output
    split = shuffled_spec(tmp_path / "split", steps=3)
    first = launch_local(split, "--processes", "2")
    assert first.code == 0, first.output
    assert differences(state_of(tmp_path / "split", 3), state_of(tmp_path / "straight", 3)) == []
    resumed = launch_local(shuffled_spec(tmp_path / "split", steps=6), "--processes", "2")
    assert resumed.code == 0, resumed.output
    assert "resumed from step-00000003 (after update 3 of 6)" in resumed.output
    assert differences(state_of(tmp_path / "split", 6), state_of(tmp_path / "straight", 6)) == []


def test_resume_never_sets_every_earlier_checkpoint_aside_and_overwrites_none(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, probe_spec(steps=9))
    assert launch_forked(spec).code == 0
    job = tmp_path / "volumes" / "vol" / "probe"
    before = steps_in(job)
    assert list(before) == ["step-00000003", "step-00000006", "step-00000009"]
    write_spec(tmp_path, probe_spec(steps=6, checkpoint={"resume": "never"}))
    run = launch_forked(spec)
    assert run.code == 0, run.output
    assert checkpoints(job) == ["step-00000003", "step-00000006"]  # this run's own
    [aside] = (job / "set-aside").iterdir()
    assert steps_in(aside) == before  # moved whole, byte for byte
    assert (f"warning: this run trains from scratch: step-00000003, step-00000006, step-00000009 "
            f"(not written by it) set aside in vol:probe/set-aside/{aside.name}, none overwritten or deleted") in run.output


def test_evaluate_reads_the_checkpoint_this_run_s_train_left(tmp_path: Path) -> None:
    spec = write_pipeline(tmp_path, pipeline_spec(steps=6))
    assert launch_forked(spec).code == 0
    write_pipeline(tmp_path, pipeline_spec(steps=3, checkpoint={"resume": "never"}))
    run = launch_forked(spec)
    assert run.code == 0, run.output
    assert ran(tmp_path)[-1] == {"stage": "evaluate", "step": 3, "rows": 3}  # not the older run's 6
    assert "after update 6 of 3" not in run.output


def test_checkpoints_no_resume_can_load_stop_the_run_and_are_kept(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, probe_spec(steps=6))
    assert launch_forked(spec).code == 0
    job = tmp_path / "volumes" / "vol" / "probe"
    for name in checkpoints(job):
        as_an_older_launcher_wrote_it(job / name)
    before = {k: v for k, v in digests(job).items() if k.startswith("step-")}  # not the run records
    write_spec(tmp_path, probe_spec(steps=9))
    run = launch_forked(spec)
    assert run.code == 1, run.output
    assert ("error: cannot resume from step-00000006: its recipe state holds what "
            "torch.load(weights_only=True) refuses (Unsupported global: GLOBAL "
            "numpy._core.multiarray._reconstruct), and so does every checkpoint written with it"
            ) in run.output
    assert "attempts     1 (1: permanent)" in run.output
    assert "Traceback" not in run.output
    assert {k: v for k, v in digests(job).items() if k.startswith("step-")} == before


@pytest.mark.parametrize("processes", ["1", "2"])  # with 2, every rank refuses together
def test_recipe_state_no_resume_could_load_fails_the_first_checkpoint(tmp_path: Path, processes: str) -> None:
    launch = launch_forked if processes == "1" else launch_local  # forked workers: one process only
    run = launch(rng_spec(tmp_path, "NumpyState", steps=6), "--processes", processes)
    assert run.code == 1, run.output
    assert ("NumpyState.state_dict() holds what torch.load(weights_only=True) refuses (Unsupported "
            "global: GLOBAL numpy._core.multiarray._reconstruct), so no checkpoint of it could ever "
            "be resumed") in run.output
    assert "attempts     1 (1: permanent)" in run.output
    assert checkpoints(tmp_path / "volumes" / "vol" / "probe") == []
