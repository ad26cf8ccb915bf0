"""A run's metrics history: `metrics.jsonl` in its folder on the volume, one JSON object per
logged step, `{"step": <updates done>, "time": <unix seconds>, "metrics": {name: float}}`,
written by the training loop's rank 0; and `run.json` beside it (the run record), for the job
and the objective when it names one."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.errors import RunError

METRICS = "metrics.jsonl"
RECORD = "run.json"


@dataclass
class History:
    run: str
    job: str
    objective: tuple[str, str] | None = None  # (metric, "min" | "max" | ""), when the record says
    series: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)

    def add(self, step: int, metrics: dict[str, Any]) -> None:
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                steps, values = self.series.setdefault(name, ([], []))
                steps.append(step)
                values.append(float(value))


def find_runs(volumes: Path, ids: tuple[str, ...]) -> list[Path]:
    """The folder of each run named (its id, or a unique prefix of it), in the order given."""
    folders = sorted(volumes.glob(f"*/*/runs/*/{METRICS}")) if volumes.is_dir() else []
    known = {path.parent.name: path.parent for path in folders}
    found = []
    for run in ids:
        matches = [name for name in known if name == run] or [n for n in known if n.startswith(run)]
        if not matches:
            raise RunError(f"{run}: no such run with metrics here (runs in {volumes})")
        if len(matches) > 1:
            raise RunError(f"{run}: names {len(matches)} runs ({', '.join(sorted(matches))}); "
                           "give more of the id")
        found.append(known[matches[0]])
    return found


def read(folder: Path) -> History:
    """The history in `folder`. A line that is not a metrics object is an error at FILE:LINE,
    except the last (a run that is writing it)."""
    record = _record(folder / RECORD)
    objective = record.get("objective") if isinstance(record.get("objective"), dict) else {}
    history = History(folder.name, str(record.get("job") or folder.parent.parent.name),
                      _objective(objective))
    path = folder / METRICS
    lines = path.read_text("utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            history.add(int(row["step"]), dict(row["metrics"]))
        except (ValueError, KeyError, TypeError):
            if number == len(lines):
                break  # being written
            raise RunError(f"{path}:{number}: not a metrics line (want "
                           '{"step": N, "time": T, "metrics": {...}})') from None
    return history


def _record(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _objective(found: dict[str, Any]) -> tuple[str, str] | None:
    name, direction = found.get("name"), found.get("direction")
    if isinstance(name, str):
        return name, direction if direction in ("min", "max") else ""
    return None
