"""The run record: what one launch of a job was, is doing, and cost, as one JSON file.

`<job folder>/runs/<run id>/run.json` on the job's volume, beside the run's other files (its
logs, metrics.jsonl). Written only by the run's coordinator (see recorder.py); read by
`launch runs`, `logs`, `pull`, `rerun`, `stop` and `report`. Every field is described in
docs/runs.md.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

_FIELDS: set[str] = set()  # RunRecord's field names, once
RUNS = "runs"  # the folder in a job's folder that holds one folder per run
RECORD = "run.json"
METRICS = "metrics.jsonl"  # beside the record: the loop's metrics history, when it keeps one
FORMAT = 1
STATUSES = ("running", "finished", "failed", "stopped", "pruned", "dead")
ENDED = ("finished", "failed", "stopped", "pruned")


def new_run_id(now: float | None = None) -> str:
    """`YYYYMMDD-HHMMSS-xxxx`: UTC start time and 4 random hex digits; sorts by start time."""
    when = datetime.datetime.fromtimestamp(time.time() if now is None else now, datetime.UTC)
    return f"{when:%Y%m%d-%H%M%S}-{os.urandom(2).hex()}"


def record_path(job_dir: Path, run_id: str) -> Path:
    return job_dir / RUNS / run_id / RECORD


@dataclass
class Attempt:
    stage: str
    number: int  # 1, 2, ... within its stage
    started: float
    ended: float | None = None
    outcome: str | None = None  # finished, transient, preempted, permanent, bug, stopped, lost
    message: str = ""
    call_id: str | None = None  # Modal's function call id, where there is one


@dataclass
class Transition:
    status: str
    time: float
    stage: str | None = None
    note: str = ""


@dataclass
class RunRecord:
    run: str
    job: str
    volume: str
    backend: str  # "local" | "modal"
    started: float
    status: str = "running"
    stage: str = "train"
    stages: list[str] = field(default_factory=lambda: ["train"])
    ended: float | None = None
    updated: float = 0.0
    app: str = ""
    environment: str | None = None
    coordinator: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    spec_hash: str = ""
    source: str = ""  # the spec file as given to `launch`
    code: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    gpu: str = "cpu"
    calls: dict[str, list[str]] = field(default_factory=dict)
    transitions: list[Transition] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    step: int | None = None
    checkpoints: dict[str, Any] = field(default_factory=lambda: {"newest": None, "best": None})
    metrics: dict[str, Any] | None = None
    objective: dict[str, Any] | None = None
    prices: dict[str, float | None] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    cost_usd: float | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    logs: str | None = None  # locally: the folder of the stages' logs (off the volume)
    # a sweep's trial: {"name": the sweep's job, "trial": its number, "params": {path: value}}
    sweep: dict[str, Any] | None = None
    format: int = FORMAT

    def to_json(self) -> str:
        # Compact: `launch runs` reads a thousand of them in well under a second.
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"), default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """A record read back; unknown keys (a newer launcher's) are ignored."""
        known = _FIELDS or _FIELDS.update(f.name for f in fields(cls)) or _FIELDS
        kept = {k: v for k, v in data.items() if k in known}
        kept["attempts"] = [Attempt(**a) for a in data.get("attempts") or []]
        kept["transitions"] = [Transition(**t) for t in data.get("transitions") or []]
        return cls(**kept)

    @classmethod
    def parse(cls, text: str | bytes) -> RunRecord:
        """Raises ValueError (or TypeError/KeyError) for a damaged record."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return cls.from_dict(data)

    @property
    def newest_step(self) -> int | None:
        newest = self.checkpoints.get("newest")
        return newest.get("step") if isinstance(newest, dict) else None

    def elapsed(self, now: float) -> float:
        return max((self.ended or now) - self.started, 0.0)

    def attempts_of(self, stage: str) -> list[Attempt]:
        return [a for a in self.attempts if a.stage == stage]

    def estimated_cost(self, now: float) -> float | None:
        """Each stage's time × the plan's price per hour for its containers; None: a stage that
        ran has no price on file. A running stage counts until now."""
        total = 0.0
        seconds = dict(self.stage_seconds)
        for attempt in self.attempts:
            if attempt.ended is None and self.status == "running":
                seconds[attempt.stage] = seconds.get(attempt.stage, 0.0) + max(now - attempt.started, 0.0)
        for stage, secs in seconds.items():
            price = self.prices.get(stage)
            if price is None:
                if secs > 0 and stage in self.prices:
                    return None
                continue
            total += price * secs / 3600
        return round(total, 4)
