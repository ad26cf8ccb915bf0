"""The probe recipe, plus a user who cleans up "scratch space" while the run goes on: after
update `at` of the first attempt, it removes the path `remove` (e.g. the volumes' `@work`)."""

from __future__ import annotations

import os
import shutil
from typing import Any, ClassVar

from probe_recipe import Probe


class Vandal(Probe):
    config_schema: ClassVar[dict[str, Any]] = {
        **Probe.config_schema,
        "properties": {
            **Probe.config_schema["properties"],
            "remove": {"type": "string", "description": "The path to remove."},
            "at": {"type": "integer", "minimum": 1, "description": "After this update."},
        },
    }

    def __init__(self, config: dict[str, Any], seed: int) -> None:
        config = dict(config)
        self.remove, self.at = config.pop("remove", ""), config.pop("at", 0)
        super().__init__(config, seed)

    def train_step(self, step: int) -> dict[str, float]:
        metrics = super().train_step(step)
        if step + 1 == self.at and os.environ.get("LAUNCH_ATTEMPT") == "1":
            shutil.rmtree(self.remove)
        return metrics
