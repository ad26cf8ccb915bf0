"""A user recipe with no environment and only namespaced metrics: `train/...` from train_step,
`val/...` from validate, whose score after each update the config scripts (`scores`), so that
tests know which checkpoint is best. Each validate() call is recorded in PROBE_DIR/validate.jsonl.
Also a stage function, `evaluate`, that reports which checkpoint it was given.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import torch


class Scored:
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "scores": {"type": "object", "default": {},
                       "description": "val/score after update N (a string key); 0 otherwise."},
            "validate_returns": {"enum": ["dict", "list", "text"], "default": "dict",
                                 "description": "What validate() returns (tests of the protocol)."},
            "rank_bonus": {"type": "number", "default": 0,
                           "description": "Added to val/score once per process index (tests of the mean)."},
        },
    }
    model_fields: ClassVar[tuple[str, ...]] = ()
    objective: ClassVar[tuple[str, str]] = ("val/score", "max")

    def __init__(self, config: dict[str, Any], seed: int) -> None:
        self.config = {"scores": {}, "validate_returns": "dict", "rank_bonus": 0, **config}
        torch.manual_seed(seed)
        self.model = torch.nn.Linear(4, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01)
        self.updates = 0
        self.out = Path(os.environ.get("PROBE_DIR", "."))

    def setup(self, accelerator: Any) -> None:
        self.acc = accelerator
        self.model, self.optimizer = accelerator.prepare(self.model, self.optimizer)

    def train_step(self, step: int) -> dict[str, float]:
        x = torch.ones(8, 4)
        loss = torch.nn.functional.mse_loss(self.model(x), x.sum(dim=1, keepdim=True))
        self.optimizer.zero_grad()
        self.acc.backward(loss)
        self.optimizer.step()
        self.updates = step + 1
        return {"train/loss": loss.item(), "train/lr": 0.01}

    def validate(self) -> Any:
        with open(self.out / "validate.jsonl", "a") as f:
            f.write(json.dumps({"after": self.updates, "rank": self.acc.process_index}) + "\n")
        score = float(self.config["scores"].get(str(self.updates), 0.0)) \
            + self.config["rank_bonus"] * self.acc.process_index
        if self.config["validate_returns"] == "list":
            return [score]
        if self.config["validate_returns"] == "text":
            return {"val/score": "high"}
        return {"val/score": score, "val/loss": 1.0 - score}

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])


def evaluate(ctx: Any) -> dict[str, float]:
    return {"checkpoint_step": float(ctx.checkpoint_step)}
