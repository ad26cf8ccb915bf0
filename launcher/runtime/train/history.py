"""The run's metrics history: `metrics.jsonl` in its log folder, one JSON object per logged step.

    {"step": <updates done>, "time": <unix seconds>, "metrics": {name: float, ...}}

Train and validation metrics go in under the names the recipe gave them (a validation metric
that is not finite is left out: JSON has no NaN). Global rank 0 alone
writes it, in the loop's local log folder, which goes to the volume with each checkpoint (the
tracker files' mirror). A resumed run carries the history on: it starts from the copy on the
volume when its own folder has none (a fresh container), and drops the lines of updates after
the checkpoint it resumed from (the run does them again). `launch report`, `launch runs` and
sweeps read it.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

FILE = "metrics.jsonl"


def read(path: Path) -> list[dict[str, Any]]:
    """The entries of a history file; a torn last line (a kill mid-write) is left out."""
    entries = []
    try:
        lines = path.read_text("utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("step"), int):
            entries.append(entry)
    return entries


class History:
    """Appends to `<folder>/metrics.jsonl`, carrying on the history up to `start_step`."""

    def __init__(self, folder: Path, mirror: Path | None, start_step: int) -> None:
        self.path = folder / FILE
        folder.mkdir(parents=True, exist_ok=True)
        source = self.path if self.path.is_file() or mirror is None else mirror / FILE
        kept = [e for e in read(source) if e["step"] <= start_step]
        tmp = self.path.with_name(f".{FILE}.tmp-{os.getpid()}")
        tmp.write_text("".join(_line(e) for e in kept), "utf-8")
        os.replace(tmp, self.path)

    def append(self, step: int, metrics: dict[str, float]) -> None:
        entry = {"step": step, "time": round(time.time(), 3),
                 "metrics": {k: v for k, v in metrics.items() if math.isfinite(v)}}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(_line(entry))


def _line(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, allow_nan=False) + "\n"
