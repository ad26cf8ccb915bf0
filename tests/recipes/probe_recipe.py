"""A tiny user recipe for runtime tests: linear regression on per-rank random data.

It records, per process and step, a digest of its parameters and the loss, so tests can
see that data-parallel ranks train on different data yet hold identical parameters.
It also lives outside the launcher package, as a user's own recipe module would.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import torch


class Probe:
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "width": {"type": "integer", "minimum": 1, "default": 8, "description": "Inputs."},
            "lr": {"type": "number", "default": 0.05, "description": "SGD learning rate."},
            "fail_at": {"type": ["integer", "null"], "default": None,
                        "description": "Make the loss NaN in train_step(fail_at) (tests)."},
            "delay_s": {"type": "number", "minimum": 0, "default": 0,
                        "description": "Sleep this long in each update (tests that signal a run)."},
            "hold_first_attempt": {"type": "boolean", "default": False,
                                   "description": "Attempt 1 waits in start-up until a signal ends it."},
        },
    }
    model_fields: ClassVar[tuple[str, ...]] = ("width",)

    def __init__(self, config: dict[str, Any], seed: int) -> None:
        self.config = {"width": 8, "lr": 0.05, "fail_at": None, "delay_s": 0, **config}
        if self.config.get("hold_first_attempt") and os.environ.get("LAUNCH_ATTEMPT") == "1":
            time.sleep(120)  # in stage 1, before the loop exists, until a SIGINT interrupts it
        self.model = torch.nn.Linear(self.config["width"], 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.config["lr"])
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.out = Path(os.environ.get("PROBE_DIR", "."))

    def setup(self, accelerator: Any) -> None:
        self.acc = accelerator
        self.generator.manual_seed(self.seed + accelerator.process_index)
        self.model, self.optimizer = accelerator.prepare(self.model, self.optimizer)

    def train_step(self, step: int) -> dict[str, float]:
        x = torch.randn(16, self.config["width"], generator=self.generator)
        y = x.sum(dim=1, keepdim=True)
        loss = torch.nn.functional.mse_loss(self.model(x), y)
        self.optimizer.zero_grad()
        self.acc.backward(loss)
        self.optimizer.step()
        value = float("nan") if self.config["fail_at"] == step else loss.item()
        self._record(step, value)
        time.sleep(self.config["delay_s"])
        return {"loss": value}

    def _record(self, step: int, loss: float) -> None:
        params = torch.cat([p.detach().flatten() for p in self.model.parameters()])
        digest = hashlib.sha256(params.numpy().tobytes()).hexdigest()
        line = json.dumps({"rank": self.acc.process_index, "step": step, "digest": digest, "loss": loss,
                           "lr": self.optimizer.param_groups[0]["lr"], "pid": os.getpid()})
        with open(self.out / f"probe-rank{self.acc.process_index}.jsonl", "a") as f:
            f.write(line + "\n")

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
