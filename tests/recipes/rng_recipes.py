"""Probe recipes that use the global random generators, for checkpoint tests.

`Shuffled` draws each update's rows with Python's global `random`: a recipe that shuffles or
samples with it is reproducible only if that generator starts every run from the same state,
in every process, and resumable bit for bit only if the checkpoint saves and restores it
(Accelerate's `random_states_<rank>.pkl` holds it).

`NumpyState` keeps NumPy's generator state in its own state, which a weights-only load (the
only way a checkpoint's recipe state is read) refuses: its first checkpoint is refused.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from probe_recipe import Probe


class Shuffled(Probe):
    def train_step(self, step: int) -> dict[str, float]:
        # 16 of 32 rows, picked by the global generator: the parameters show which.
        rows = random.sample(range(32), 16)
        x = torch.randn(32, self.config["width"], generator=self.generator)[rows]
        y = x.sum(dim=1, keepdim=True)
        loss = torch.nn.functional.mse_loss(self.model(x), y)
        self.optimizer.zero_grad()
        self.acc.backward(loss)
        self.optimizer.step()
        self._record(step, loss.item())
        return {"loss": loss.item()}


class NumpyState(Probe):
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "numpy_rng": np.random.get_state()}
