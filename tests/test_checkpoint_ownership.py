"""A checkpoint is loaded only by the run it belongs to, and never overwritten: through real
`launch --local` processes (tests/runjob.py), compared bit for bit (tests/statecmp.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from runjob import RECIPES, launch_local, probe_spec, write_spec
from statecmp import differences, load_checkpoint


def _shuffled(folder: Path, steps: int) -> Path:
    """A spec of the probe recipe drawing its rows with Python's global `random`."""
    spec = write_spec(folder, probe_spec(steps=steps, train={"recipe": "shuffle_recipe:Shuffled"}))
    shutil.copy(RECIPES / "shuffle_recipe.py", folder / "shuffle_recipe.py")
    return spec


def _state(folder: Path, step: int) -> dict:
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
    straight = launch_local(_shuffled(tmp_path / "straight", steps=6), "--processes", "2")
    assert straight.code == 0, straight.output
    split = _shuffled(tmp_path / "split", steps=3)
    first = launch_local(split, "--processes", "2")
    assert first.code == 0, first.output
    assert differences(_state(tmp_path / "split", 3), _state(tmp_path / "straight", 3)) == []
    resumed = launch_local(_shuffled(tmp_path / "split", steps=6), "--processes", "2")
    assert resumed.code == 0, resumed.output
    assert "resumed from step-00000003 (after update 3 of 6)" in resumed.output
    assert differences(_state(tmp_path / "split", 6), _state(tmp_path / "straight", 6)) == []
