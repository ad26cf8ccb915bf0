"""The probe recipe, drawing each update's rows with Python's global `random` generator.

A recipe that shuffles or samples with `random` is reproducible only if that generator starts
every run from the same state, in every process; and resumable bit for bit only if it is saved
and restored with the checkpoint (Accelerate's `random_states_<rank>.pkl` holds it).
"""

from __future__ import annotations

import random
from typing import Any

import torch
from probe_recipe import Probe


class Shuffled(Probe):
    def train_step(self, step: int) -> dict[str, float]:
        # Rows 16..31 of a fixed batch, picked by the global generator: the parameters show it.
        rows = random.sample(range(32), 16)
        x = torch.randn(32, self.config["width"], generator=self.generator)[rows]
        y = x.sum(dim=1, keepdim=True)
        loss = torch.nn.functional.mse_loss(self.model(x), y)
        self.optimizer.zero_grad()
        self.acc.backward(loss)
        self.optimizer.step()
        self._record(step, loss.item())
        return {"loss": loss.item()}
