"""`launch runs [SPEC.yaml | NAME]... [--all] [--json]`: the runs of jobs, newest first."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Sequence
from typing import Any

import click

from launcher.registry import Seen, Where, runs

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
        "environment": rec.environment,
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


def list_runs(targets: Sequence[str], where: Where, show_all: bool, as_json_out: bool) -> int:
    now = time.time()
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
