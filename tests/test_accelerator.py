"""The runtime's Accelerator: it knows what it prepared, as save_state does, and an optimizer
step asks the import system nothing."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from launcher.runtime.train.accelerator import Accelerator, settle_absent


class Searches:
    """A finder first in sys.meta_path: it notes every name the import system searches for."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        self.names.append(name)


def _searches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    finder = Searches()
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    return finder.names


def test_an_optimizer_step_looks_nothing_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "lomo_optim", raising=False)
    acc = Accelerator(cpu=True)
    model, opt = acc.prepare(torch.nn.Linear(3, 1), torch.optim.Adam([torch.nn.Parameter(torch.ones(3))]))
    model(torch.ones(2, 3)).sum().backward()
    opt.step()  # the first step imports what torch imports lazily, once
    searched = _searches(monkeypatch)
    opt.step()
    assert searched == []  # is_lomo_available(), asked twice per step, searched sys.path before
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("lomo_optim")  # as when nothing was recorded: not installed


def test_an_installed_package_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lomo_optim.py").write_text("AdaLomo = Lomo = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lomo_optim", raising=False)
    settle_absent()
    assert "lomo_optim" not in sys.modules
    assert importlib.util.find_spec("lomo_optim") is not None


class Registered:
    def state_dict(self) -> dict[str, int]:
        return {}

    def load_state_dict(self, state: dict[str, int]) -> None:
        pass


def test_it_notes_what_save_state_saves_and_forgets_it_as_accelerate_does() -> None:
    acc = Accelerator(cpu=True)
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    net, opt, sched = acc.prepare(net, opt, sched)
    again = acc.prepare(net)  # prepared twice: saved once
    acc.register_for_checkpointing(registered := Registered())
    found = acc.prepared
    assert (found.models, found.optimizers, found.schedulers) == ([net], [opt], [sched])
    assert again is net and found.custom_objects == [registered] and not found.save_hooks
    acc.register_save_state_pre_hook(lambda models, weights, folder: None)
    acc.free_memory()
    assert (acc.prepared.models, acc.prepared.optimizers, acc.prepared.schedulers) == ([], [], [])
    assert acc.prepared.custom_objects == [registered] and acc.prepared.save_hooks
