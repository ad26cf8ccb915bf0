"""Checkpoints written in the background are the checkpoints a synchronous save writes.

A recipe with everything `save_state` saves (two models, tied weights, two optimizers, a
scheduler, a registered object, global RNG draws) trains a few steps; the same state is
saved once in the loop and once in the background, while the background write is held back
until training has moved on (more updates, more random numbers). Every file's sha256 must
match, the folder must load with `accelerator.load_state`, and a second save must wait for
the write before it (it reuses the host buffers).
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from runjob import checkpoints, launch_forked, probe_spec, write_spec

from launcher.load import load_spec
from launcher.runtime.checkpoint import store, writer
from launcher.runtime.checkpoint.manager import checkpointer
from launcher.runtime.checkpoint.snapshot import HostCopies
from launcher.runtime.storage.volume import LocalVolume
from launcher.runtime.train.accelerator import Accelerator
from launcher.runtime.train.context import LoopContext


class Tally:
    """A registered object: Accelerate saves it as custom_checkpoint_0.pkl."""

    def __init__(self) -> None:
        self.seen = 0

    def state_dict(self) -> dict[str, int]:
        return {"seen": self.seen}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seen = state["seen"]


class Tied(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encode = torch.nn.Linear(6, 6)
        self.decode = torch.nn.Linear(6, 6)
        self.decode.weight = self.encode.weight  # tied: safetensors keeps one of the two


class Rich:
    config_schema: ClassVar[dict[str, Any]] = {"properties": {}}
    model_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.tied, self.head = Tied(), torch.nn.Linear(6, 1)
        self.adam = torch.optim.Adam(self.tied.parameters(), lr=1e-2)
        self.sgd = torch.optim.SGD(self.head.parameters(), lr=1e-2, momentum=0.9)
        self.schedule = torch.optim.lr_scheduler.StepLR(self.adam, step_size=2, gamma=0.5)
        self.tally = Tally()
        self.own = torch.zeros(3)  # changed in place by every step

    def setup(self, acc: Any) -> None:
        self.acc = acc
        self.tied, self.head, self.adam, self.sgd, self.schedule = acc.prepare(
            self.tied, self.head, self.adam, self.sgd, self.schedule)
        acc.register_for_checkpointing(self.tally)

    def train_step(self) -> None:
        x = torch.randn(4, 6) + random.random() + float(np.random.rand())
        loss = self.head(self.tied.decode(self.tied.encode(x))).square().mean()
        self.acc.backward(loss)
        for opt in (self.adam, self.sgd):
            opt.step()
            opt.zero_grad()
        self.schedule.step()
        self.tally.seen += 1
        self.own += 1

    def state_dict(self) -> dict[str, Any]:
        return {"own": self.own}  # a view of live memory: a background save must copy it

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.own.copy_(state["own"])


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    return load_spec(write_spec(tmp_path, probe_spec())).spec


def manager(spec: Any, recipe: Rich, acc: Any, folder: Path, background: bool | str) -> Any:
    spec = dataclasses.replace(spec, checkpoint=dataclasses.replace(spec.checkpoint,
                                                                    async_write=background))
    ctx = LoopContext(spec=spec, recipe=recipe, checkpoints=folder, run_dir=folder / "run",
                      volume=LocalVolume(folder.with_name(folder.name + ".committed"), folder),
                      times={})
    return checkpointer(ctx, acc)


def trained(steps: int, **options: Any) -> tuple[Rich, Accelerator]:
    recipe, acc = Rich(), Accelerator(cpu=True, **options)
    recipe.setup(acc)
    for _ in range(steps):
        recipe.train_step()
    return recipe, acc


def digests(folder: Path) -> dict[str, str]:
    manifest = json.loads((folder / store.MANIFEST).read_text())
    return {name: entry["sha256"] for name, entry in manifest["files"].items()}


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Background writes start only once the test sets this event."""
    go = threading.Event()
    submit = writer.Writer.submit

    def held_submit(self: writer.Writer, work: Any) -> None:
        submit(self, lambda: (go.wait(), work()))

    monkeypatch.setattr(writer.Writer, "submit", held_submit)
    return go


# torch.compile through Accelerate: save_state saves the models as they were before it.
@pytest.mark.parametrize("options", [{}, {"dynamo_backend": "eager"}], ids=["eager", "compiled"])
def test_a_background_checkpoint_is_the_synchronous_one_bit_for_bit(spec, tmp_path: Path, held,
                                                                      options: dict) -> None:
    recipe, acc = trained(3, **options)
    sync = manager(spec, recipe, acc, tmp_path / "sync", background=False)
    sync.save(3, {})
    assert not sync.background
    background = manager(spec, recipe, acc, tmp_path / "async", background=True)
    assert background.background
    background.save(3, {})
    for _ in range(2):  # weights, optimizer, scheduler, RNG and recipe state all move on
        recipe.train_step()
    assert store.complete(tmp_path / "async") == []  # held back until now
    held.set()
    background.wait()
    names = digests(tmp_path / "sync" / "step-00000003")
    assert {"model.safetensors", "model_1.safetensors", "optimizer.bin", "optimizer_1.bin",
            "scheduler.bin", "custom_checkpoint_0.pkl", "random_states_0.pkl",
            "recipe-0.pt"} <= set(names)
    assert digests(tmp_path / "async" / "step-00000003") == names


def test_a_background_checkpoint_loads_with_load_state(spec, tmp_path: Path) -> None:
    recipe, acc = trained(3)
    saved = manager(spec, recipe, acc, tmp_path, background=True)
    saved.save(3, {})
    expected = {k: v.clone() for k, v in recipe.tied.state_dict().items()}
    rng = torch.get_rng_state()
    saved.close()
    fresh, fresh_acc = trained(0)
    fresh_acc.load_state(str(tmp_path / "step-00000003"))
    assert all(torch.equal(fresh.tied.state_dict()[k], v) for k, v in expected.items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert fresh.tally.seen == 3


def test_a_second_save_waits_for_the_write_before_it(spec, tmp_path: Path, held,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    recipe, acc = trained(3)
    sync = manager(spec, recipe, acc, tmp_path / "sync", background=False)
    sync.save(3, {})
    background = manager(spec, recipe, acc, tmp_path / "async", background=True)
    background.save(3, {})
    recipe.train_step()
    waiting = threading.Event()
    wait = writer.Writer.wait

    def noted_wait(self: writer.Writer) -> None:
        waiting.set()
        wait(self)

    monkeypatch.setattr(writer.Writer, "wait", noted_wait)
    second = threading.Thread(target=background.save, args=(4, {}))
    second.start()
    assert waiting.wait(timeout=60)  # the second save is waiting, its copy not yet taken
    held.set()
    second.join()
    background.close()
    assert digests(tmp_path / "async" / "step-00000003") == digests(tmp_path / "sync" / "step-00000003")
    assert [c.step for c in store.complete(tmp_path / "async")] == [4, 3]


def test_a_failed_background_write_is_raised_once_by_the_next_save(spec, tmp_path: Path) -> None:
    recipe, acc = trained(1)
    saved = manager(spec, recipe, acc, tmp_path / "blocked", background=True)
    shutil.rmtree(tmp_path / "blocked")
    (tmp_path / "blocked").write_text("a file where the checkpoint folder should be")
    saved.save(1, {})
    with pytest.raises(store.CheckpointError, match="checkpoint after update 1 not written"):
        saved.save(2, {})
    saved.close()  # the error was reported once; closing does not raise it again
    assert saved.written == 0


def test_more_than_one_process_or_a_plain_accelerator_saves_in_the_loop(spec, tmp_path: Path) -> None:
    from accelerate import Accelerator as Plain

    recipe = Rich()
    plain = Plain(cpu=True)
    recipe.setup(plain)
    assert not manager(spec, recipe, plain, tmp_path, background="auto").background


def test_a_local_run_says_where_its_checkpoints_were_written(tmp_path: Path) -> None:
    spec = probe_spec(steps=7, checkpoint={"async": "auto"})
    run = launch_forked(write_spec(tmp_path, spec))
    assert run.code == 0, run.output
    assert "[launch] checkpoints are written in the background; a copy of the state takes 0.0 MiB" \
           " of host memory" in run.output
    assert ", written in the background)" in run.output.split("checkpoints  3 written to ")[1]
    assert checkpoints(run.volume / "vol" / "probe") == ["step-00000003", "step-00000006", "step-00000007"]


def test_host_copies_fall_back_to_pageable_memory_when_pinning_is_refused(capsys) -> None:
    # Pinning needs CUDA here; in a container, a locked-memory limit refuses it the same way.
    copies = HostCopies(pin=not torch.cuda.is_available())
    weight = torch.arange(6.0).reshape(2, 3)
    state = {"tied": weight, "same": weight, "steps": [torch.tensor(3), 0.5]}
    copied = copies.copy(state, ("state",))
    weight += 1  # the copy does not move with the original
    assert torch.equal(copied["tied"], torch.arange(6.0).reshape(2, 3))
    assert copied["same"] is copied["tied"] and copied["steps"][1] == 0.5
    if not torch.cuda.is_available():
        assert not copies.pin
        assert "cannot pin host memory for checkpoint copies" in capsys.readouterr().err


def test_a_run_that_fails_right_after_a_background_save_still_commits_it(tmp_path: Path) -> None:
    # train_step(3) is update 4, just after checkpoint step-3 was handed to the writer: the
    # failure goes up only once that write is committed, and the job's lease is released after.
    spec = probe_spec(steps=8, checkpoint={"async": True}, train={"config": {"fail_at": 3}})
    run = launch_forked(write_spec(tmp_path, spec))
    assert run.code == 1, run.output
    assert "attempts     1 (1: permanent)" in run.output
    job = run.volume / "vol" / "probe"
    assert checkpoints(job) == ["step-00000003"]
    assert sorted(p.name for p in job.iterdir()) == ["runs", "step-00000003"]  # no lease, no leftover
