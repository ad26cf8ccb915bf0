"""The probe recipe, plus a user who cleans up "scratch space" while the run goes on: after
update `at` of the first attempt, it removes the path `remove` (e.g. the volumes' `@work`), then,
with `relaunch` (a spec) and `volumes`, launches that spec on those volumes and waits for it,
leaving its exit code and output in PROBE_DIR/relaunch.txt."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any, ClassVar

from probe_recipe import Probe


class Vandal(Probe):
    config_schema: ClassVar[dict[str, Any]] = {
        **Probe.config_schema,
        "properties": {
            **Probe.config_schema["properties"],
            "remove": {"type": "string", "description": "The path to remove."},
            "at": {"type": "integer", "minimum": 1, "description": "After this update."},
            "relaunch": {"type": "string", "description": "A spec to launch then."},
            "volumes": {"type": "string", "description": "Its --volumes-dir."},
        },
    }

    def __init__(self, config: dict[str, Any], seed: int) -> None:
        config = dict(config)
        self.remove, self.at = config.pop("remove", ""), config.pop("at", 0)
        self.relaunch, self.volumes = config.pop("relaunch", ""), config.pop("volumes", "")
        super().__init__(config, seed)

    def train_step(self, step: int) -> dict[str, float]:
        metrics = super().train_step(step)
        if step + 1 == self.at and os.environ.get("LAUNCH_ATTEMPT") == "1":
            shutil.rmtree(self.remove)
            if self.relaunch:
                self._relaunch()
        return metrics

    def _relaunch(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCH_")}
        run = subprocess.run([sys.executable, "-m", "launcher.cli", self.relaunch, "--local",
                              "--volumes-dir", self.volumes], env=env, capture_output=True, text=True)
        (self.out / "relaunch.txt").write_text(f"{run.returncode}\n{run.stdout}{run.stderr}")
