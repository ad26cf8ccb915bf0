"""A recipe for bench/checkpoint.py: a stack of Linear layers (about 100 M parameters by
default) trained with Adam on random data. Built in code: nothing to download."""

from __future__ import annotations

from typing import Any, ClassVar

import torch


class Stack:
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "width": {"type": "integer", "minimum": 1, "default": 2048,
                      "description": "Features of each layer."},
            "layers": {"type": "integer", "minimum": 1, "default": 24,
                       "description": "Linear layers: width * width + width parameters each."},
            "batch": {"type": "integer", "minimum": 1, "default": 16, "description": "Rows per step."},
            "threads": {"type": "integer", "minimum": 0, "default": 1,
                        "description": "torch intra-op threads; 0 leaves torch's default."},
        },
    }
    model_fields: ClassVar[tuple[str, ...]] = ("width", "layers")

    def __init__(self, config: dict[str, Any], seed: int) -> None:
        self.config = {"width": 2048, "layers": 24, "batch": 16, "threads": 1, **config}
        if self.config["threads"]:
            torch.set_num_threads(self.config["threads"])
        width = self.config["width"]
        torch.manual_seed(seed)
        self.model = torch.nn.Sequential(*[torch.nn.Linear(width, width)
                                           for _ in range(self.config["layers"])])
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)

    def setup(self, accelerator: Any) -> None:
        self.acc = accelerator
        self.model, self.optimizer = accelerator.prepare(self.model, self.optimizer)

    def train_step(self, step: int) -> dict[str, float]:
        x = torch.randn(self.config["batch"], self.config["width"], device=self.acc.device)
        loss = self.model(x).square().mean()
        self.acc.backward(loss)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"loss": loss.item()}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
