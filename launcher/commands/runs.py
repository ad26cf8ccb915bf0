"""`launch runs [SPEC.yaml | NAME]... [--all] [--json]`: the runs of jobs, newest first; for a
sweep spec, the sweep view: one row per trial (its newest run)."""

from __future__ import annotations

import contextlib
import datetime
import json
import time
from collections.abc import Sequence
from typing import Any

import click

from launcher.registry import Seen, Where, runs, sweep_target, sweep_trials

SHOWN = 20  # without --all: the newest this many
COLUMNS = ("RUN", "JOB", "STAGE", "STATUS", "GPU", "STARTED", "ELAPSED", "ATTEMPTS",
           "CHECKPOINT", "OBJECTIVE", "COST", "COMMIT")


def span(seconds: float) -> str:
    """12s, 5m12s, 1h02m, 2d03h."""
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 86400}d{total % 86400 // 3600:02d}h"


def utc(when: float | None) -> str | None:
    if when is None:
        return None
    return datetime.datetime.fromtimestamp(when, datetime.UTC).isoformat(timespec="seconds")


def commit_of(record: Any) -> str:
    code = record.code or {}
    commit = (code.get("commit") or "")[:10]
    return (commit or "-") + ("+dirty" if code.get("dirty") else "")


def as_json(seen: Seen, now: float) -> dict[str, Any]:
    """One run as `launch runs --json` gives it (the fields are listed in docs/runs.md)."""
    rec = seen.record
    objective = rec.objective
    return {
        "run": rec.run, "job": rec.job, "status": seen.status, "stage": rec.stage,
        "attempts": len(rec.attempts), "step": rec.step, "checkpoint": rec.newest_step,
        "best_checkpoint": (rec.checkpoints.get("best") or {}).get("step"),
        "objective": None if objective is None else {
            "name": objective["name"], "mode": objective["mode"], "last": objective.get("last"),
            "best": objective.get("best")},
        "cost_usd": rec.estimated_cost(now) if seen.status == "running" else rec.cost_usd,
        "commit": (rec.code or {}).get("commit"), "dirty": (rec.code or {}).get("dirty"),
        "started": utc(rec.started), "ended": utc(rec.ended),
        "elapsed_s": round(rec.elapsed(now if seen.status == "running" else rec.updated), 1),
        "gpu": rec.gpu, "volume": rec.volume, "backend": rec.backend, "app": rec.app,
        "environment": rec.environment, "sweep": rec.sweep,
    }


def _checkpoint(rec: Any, now: float) -> str:
    newest = rec.checkpoints.get("newest")
    if not newest:
        return "-"
    return f"{newest['step']} ({span(max(now - newest['time'], 0))} ago)"


def _objective(rec: Any) -> str:
    obj = rec.objective
    if not obj or obj.get("last") is None:
        return "-"
    return f"{obj['name']} {obj['last']:.4g} (best {obj['best']:.4g})"


def _cost(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.2f}"


def row(seen: Seen, now: float) -> list[str]:
    data = as_json(seen, now)
    rec = seen.record
    started = datetime.datetime.fromtimestamp(rec.started, datetime.UTC).strftime("%Y-%m-%d %H:%M")
    return [rec.run, rec.job, rec.stage, seen.status, rec.gpu, started,
            span(data["elapsed_s"]), str(data["attempts"]), _checkpoint(rec, now),
            _objective(rec), _cost(data["cost_usd"]), commit_of(rec)]


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


SWEEP_COLUMNS = ("TRIAL", "STATE", "BEST", "UPDATES", "COST", "RUN", "PARAMETERS")
TRIAL_STATES = {"finished": "complete", "pruned": "pruned", "failed": "failed", "dead": "failed",
                "running": "running", "stopped": "stopped"}


def sweep_best(seen: Seen) -> tuple[str | None, float | None]:
    """The sweep's objective and the trial's best value of it: the record's own objective when
    it is the sweep's, else the best in the run's metrics history."""
    rec, sweep = seen.record, seen.record.sweep
    metric, direction = sweep.get("metric"), sweep.get("direction", "min")
    objective = rec.objective or {}
    if not metric or objective.get("name") == metric:
        return objective.get("name"), objective.get("best")
    from launcher.runtime.runs.record import METRICS, RUNS

    try:
        text = seen.found.source.read(f"{rec.job}/{RUNS}/{rec.run}/{METRICS}").decode()
    except OSError:
        return metric, None
    values = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            value = json.loads(line).get("metrics", {}).get(metric)
            if isinstance(value, (int, float)):
                values.append(float(value))
    return metric, (max if direction == "max" else min)(values) if values else None


def trial_row(seen: Seen, now: float) -> dict[str, Any]:
    """One trial in the sweep view (`--json`: these keys)."""
    data = as_json(seen, now)
    metric, best = sweep_best(seen)
    return {"trial": seen.record.sweep["trial"], "state": TRIAL_STATES.get(seen.status, seen.status),
            "best": best, "objective": metric,
            "updates": data["step"], "cost_usd": data["cost_usd"], "run": data["run"],
            "job": data["job"], "params": seen.record.sweep.get("params") or {}}


def sweep_view(name: str, trials: list[Seen], as_json_out: bool) -> int:
    now = time.time()
    newest: dict[int, Seen] = {}
    for seen in trials:  # newest first: a trial resumed after a restart shows its latest run
        newest.setdefault(seen.record.sweep["trial"], seen)
    rows = [trial_row(newest[n], now) for n in sorted(newest)]
    if as_json_out:
        click.echo(json.dumps(rows, indent=2))
        return 0
    if not rows:
        click.echo(f"no trials yet of the sweep {name}", err=True)
        return 0
    shown = [[str(r["trial"]), r["state"], "-" if r["best"] is None else f"{r['best']:.4g}",
              "-" if r["updates"] is None else str(r["updates"]), _cost(r["cost_usd"]), r["run"],
              ", ".join(f"{k.rsplit('.', 1)[-1]}={v!r}" for k, v in r["params"].items())] for r in rows]
    click.echo(table([SWEEP_COLUMNS, *shown]))
    click.echo(f"sweep {name}: {len(rows)} trials; costs are estimates from the plan's prices", err=True)
    return 0


def list_runs(targets: Sequence[str], where: Where, show_all: bool, as_json_out: bool) -> int:
    now = time.time()
    swept = sweep_target(targets)
    if swept is not None:
        return sweep_view(swept[1], sweep_trials(*swept, where), as_json_out)
    found = runs(targets, where)
    shown = found if show_all else found[:SHOWN]
    if as_json_out:
        click.echo(json.dumps([as_json(s, now) for s in shown], indent=2))
        return 0
    if not found:
        click.echo("no runs yet" + (" of " + ", ".join(targets) if targets else ""), err=True)
        return 0
    click.echo(table([COLUMNS, *(row(s, now) for s in shown)]))
    if len(found) > len(shown):
        click.echo(f"({len(found) - len(shown)} older runs not shown; --all shows them)", err=True)
    return 0
