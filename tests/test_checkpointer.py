"""The checkpoint manager's public face, in one process: save, resume, retention after the
commit, refusal of a changed model, and no saves once closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from accelerate import Accelerator
from runjob import checkpoints, probe_spec, write_spec

from launcher.load import load_spec
from launcher.runtime.checkpointer import Restored, checkpointer
from launcher.runtime.context import LoopContext
from launcher.runtime.failures import PermanentError
from launcher.runtime.volume import LocalVolume


class Counter:
    """A recipe with a model and a state of its own."""

    config_schema: ClassVar[dict[str, Any]] = {"properties": {"width": {"default": 8}}}
    model_fields: ClassVar[tuple[str, ...]] = ("width",)

    def __init__(self, width: int = 8) -> None:
        self.model = torch.nn.Linear(width, 1)
        self.count = 0

    def setup(self, accelerator: Any) -> None:
        self.model = accelerator.prepare(self.model)

    def state_dict(self) -> dict[str, Any]:
        return {"count": torch.tensor(self.count)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = int(state["count"])


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # train.config is checked against the probe recipe found here

    def make(volume: LocalVolume, keep_last: int = 2, width: int | None = None):
        config = {} if width is None else {"config": {"width": width}}
        spec = load_spec(write_spec(tmp_path, probe_spec(
            checkpoint={"keep_last": keep_last}, train=config))).spec
        recipe = Counter(width or 8)
        ctx = LoopContext(spec=spec, recipe=recipe, checkpoints=volume.path, run_dir=tmp_path / "run",
                          volume=volume, times={})
        acc = Accelerator(cpu=True)
        recipe.setup(acc)
        return checkpointer(ctx, acc), recipe

    return make


def test_a_saved_state_resumes_with_its_step_and_extra(manager, tmp_path: Path) -> None:
    volume = LocalVolume(tmp_path / "volume")
    first, recipe = manager(volume)
    recipe.count = 7
    first.save(3, {"best_return": 12.5})
    assert (first.written, volume.commits) == (1, 1)  # committed by the manager itself

    second, fresh = manager(volume)
    restored = second.resume()
    assert restored == Restored(3, {"best_return": 12.5, "model_config": {"width": 8}, "world_size": 1})
    assert fresh.count == 7
    assert torch.equal(fresh.model.weight, recipe.model.weight)


def test_nothing_to_resume_is_step_zero(manager, tmp_path: Path) -> None:
    fresh, _ = manager(LocalVolume(tmp_path / "volume"))
    assert fresh.resume() == Restored(0, {})
    assert fresh.newest_step() is None


def test_retention_keeps_keep_last_after_each_commit(manager, tmp_path: Path) -> None:
    volume = LocalVolume(tmp_path / "volume")
    saver, _ = manager(volume, keep_last=2)
    for step in (1, 2, 3):
        saver.save(step, {})
    assert checkpoints(volume.path) == ["step-00000002", "step-00000003"]
    assert saver.newest_step() == 3 and volume.commits == 3


def test_a_changed_model_is_refused_as_permanent(manager, tmp_path: Path) -> None:
    volume = LocalVolume(tmp_path / "volume")
    manager(volume)[0].save(2, {})
    other, _ = manager(volume, width=4)
    with pytest.raises(PermanentError, match=r"^cannot resume from step-00000002: the model changed "
                                             r"\(train.config.width was 8, now 4\)"):
        other.resume()


def test_no_save_after_close(manager, tmp_path: Path) -> None:
    volume = LocalVolume(tmp_path / "volume")
    saver, _ = manager(volume)
    saver.save(1, {})
    saver.close()
    with pytest.raises(RuntimeError, match="the checkpoint manager is closed"):
        saver.save(2, {})
    assert checkpoints(volume.path) == ["step-00000001"]
