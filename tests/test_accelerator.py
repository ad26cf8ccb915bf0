"""The runtime's Accelerator: it knows what it prepared, as save_state does."""

from __future__ import annotations

import torch

from launcher.runtime.accelerator import Accelerator


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
