"""The coordinator's writer of a run record: one writer per record, every change saved whole.

Each save writes a new file and renames it into place, so a reader never sees half a record;
`commit` (the volume's, on Modal) follows when one is given. Saving the record never fails the
run: a record that cannot be written is said once in the log and the run goes on.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from launcher.runtime.runs.record import ENDED, Attempt, RunRecord, Transition, record_path

METRICS_EVERY_S = 2.0  # metrics alone rewrite the record at most this often


class Recorder:
    def __init__(self, job_dir: Path, record: RunRecord, commit: Callable[[], None] | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.path = record_path(job_dir, record.run)
        self.record = record
        self.commit = commit
        self.say = say or (lambda _: None)
        self.failed_once = False
        self.last_save = 0.0
        if not record.transitions:
            record.transitions.append(Transition(record.status, record.started, record.stage))

    def save(self) -> None:
        now = time.time()
        self.record.updated = now
        self.record.cost_usd = self.record.estimated_cost(now)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".tmp-{self.path.name}-{os.getpid()}")
            tmp.write_text(self.record.to_json(), "utf-8")
            os.replace(tmp, self.path)
            if self.commit is not None:
                self.commit()
        except Exception as exc:  # the run matters more than its record
            if not self.failed_once:
                self.failed_once = True
                self.say(f"warning: the run record {self.path} was not written: {exc}")
            return
        self.last_save = now

    # -- state changes: each is saved at once ------------------------------------------------

    def transition(self, status: str, stage: str | None = None, note: str = "") -> None:
        rec = self.record
        if stage is not None:
            rec.stage = stage
        if status != rec.status or stage is not None:
            rec.transitions.append(Transition(status, time.time(), rec.stage, note))
        rec.status = status
        self.save()

    def attempt_started(self, stage: str, number: int, call_id: str | None = None) -> None:
        self.record.stage = stage
        self.record.attempts.append(Attempt(stage, number, time.time(), call_id=call_id))
        if call_id:
            self._call(stage, call_id)
        self.save()

    def attempt_ended(self, stage: str, number: int, outcome: str, message: str = "") -> None:
        now = time.time()
        for attempt in reversed(self.record.attempts):
            if attempt.stage == stage and attempt.number == number and attempt.ended is None:
                attempt.ended, attempt.outcome, attempt.message = now, outcome, message
                secs = self.record.stage_seconds
                secs[stage] = round(secs.get(stage, 0.0) + now - attempt.started, 3)
                break
        self.save()

    def stage_call(self, stage: str, call_id: str, save: bool = True) -> None:
        """A stage's call (Modal's function call id), made by the driver; `save=False`: saved
        with the next change (the call's first attempt, locally)."""
        self.record.stage = stage
        self._call(stage, call_id)
        if save:
            self.save()

    def _call(self, stage: str, call_id: str) -> None:
        calls = self.record.calls.setdefault(stage, [])
        if call_id not in calls:
            calls.append(call_id)

    def checkpoint(self, step: int, when: float | None = None) -> None:
        """A checkpoint of `step` was committed: the newest; the best by the objective's value
        last seen at or before it."""
        rec = self.record
        rec.checkpoints["newest"] = {"step": step, "time": when or time.time()}
        obj = rec.objective
        if obj is not None and obj.get("last") is not None:
            best = rec.checkpoints.get("best")
            value = obj["last"]
            if best is None or _better(value, best["value"], obj["mode"]):
                rec.checkpoints["best"] = {"step": step, "value": value, "time": when or time.time()}
        self.save()

    def metrics(self, step: int, values: Mapping[str, Any], when: float | None = None,
                force: bool = False) -> None:
        """The newest metrics (numbers only); saved at most every METRICS_EVERY_S."""
        now = when or time.time()
        numbers = {k: float(v) for k, v in values.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        rec = self.record
        rec.step = step
        rec.metrics = {"step": step, "time": now, "values": numbers}
        obj = rec.objective
        if obj is not None and obj["name"] in numbers:
            value = numbers[obj["name"]]
            obj["last"] = value
            if obj.get("best") is None or _better(value, obj["best"], obj["mode"]):
                obj["best"], obj["best_step"] = value, step
        if force or now - self.last_save >= METRICS_EVERY_S:
            self.save()

    def history(self, path: Path) -> None:
        """The metrics history the loop keeps (`metrics.jsonl`: one `{"step", "time",
        "metrics"}` object a line), when there is one: its lines newer than what the record
        has become the last metrics and the objective's last and best. Not saved here."""
        try:
            lines = path.read_text("utf-8").splitlines()
        except OSError:
            return
        seen = self.record.step or -1
        for line in lines:
            try:
                entry = json.loads(line)
                step, values = int(entry["step"]), entry["metrics"]
            except (ValueError, KeyError, TypeError):
                continue  # a line being written, or damaged
            if step >= seen and isinstance(values, Mapping):
                self.metrics(step, values, float(entry.get("time") or time.time()), force=False)
                seen = step

    def set_objective(self, name: str, mode: str) -> None:
        if self.record.objective is None or self.record.objective.get("name") != name:
            self.record.objective = {"name": name, "mode": mode, "last": None, "best": None,
                                     "best_step": None}

    def result(self, result: Mapping[str, Any]) -> None:
        """A stage's result: its metrics become the last metrics; the objective, if it names one."""
        kept = {k: v for k, v in result.items() if isinstance(v, (str, int, float, bool, type(None)))}
        self.record.result = kept
        objective = result.get("objective")
        if isinstance(objective, (list, tuple)) and len(objective) == 2:
            self.set_objective(str(objective[0]), str(objective[1]))
        numbers = result.get("metrics") if isinstance(result.get("metrics"), Mapping) else result
        step = result.get("steps") if isinstance(result.get("steps"), int) else self.record.step
        self.metrics(step or 0, numbers, force=True)

    def end(self, status: str, error: str | None = None) -> None:
        assert status in ENDED, status
        rec = self.record
        rec.ended = time.time()
        rec.error = error
        now = rec.ended
        for attempt in rec.attempts:  # an attempt the coordinator never heard end
            if attempt.ended is None:
                attempt.ended, attempt.outcome = now, attempt.outcome or status
                secs = rec.stage_seconds
                secs[attempt.stage] = round(secs.get(attempt.stage, 0.0) + now - attempt.started, 3)
        self.transition(status, note=error or "")


def _better(value: float, than: float, mode: str) -> bool:
    return value < than if mode == "min" else value > than
