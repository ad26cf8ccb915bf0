"""Stage functions for the pipeline tests: each run leaves a line in PROBE_DIR, so a test can
count what ran; `prepare` writes the data file that `evaluate` reads back."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def _record(stage: str, **data: Any) -> None:
    with open(Path(os.environ.get("PROBE_DIR", ".")) / "stages.jsonl", "a") as out:
        out.write(json.dumps({"stage": stage, **data}) + "\n")


def prepare(ctx: Any) -> Any:
    if ctx.config.get("broken"):
        return "not metrics"  # a protocol violation: permanent
    if ctx.config.get("needs"):
        __import__(ctx.config["needs"])  # a package the environment may lack
    if ctx.config.get("hold_first_attempt") and os.environ.get("LAUNCH_ATTEMPT") == "1":
        time.sleep(120)  # until a preemption (SIGINT) interrupts it
    rows = _rows(ctx)
    tmp = ctx.data_dir / ".tmp-rows.json"
    tmp.write_text(json.dumps({"rows": rows, "seed": ctx.seed}))
    os.replace(tmp, ctx.data_dir / "rows.json")
    if os.environ.get("PROBE_FAIL_AFTER_WRITE"):
        raise RuntimeError("prepare failed after writing its data")  # transient: retried
    _record("prepare", rows=rows)
    return {"rows": rows}


def _rows(ctx: Any) -> int:
    """The rows of its declared input files (lines), else PROBE_ROWS, else config.rows (3)."""
    if getattr(ctx, "inputs", ()):  # a StageContext before inputs existed has none
        files = [p for path in ctx.inputs for p in ([path] if path.is_file() else sorted(path.rglob("*")))
                 if p.is_file()]
        return sum(len(p.read_text().splitlines()) for p in files)
    return int(os.environ.get("PROBE_ROWS", ctx.config.get("rows", 3)))


def evaluate(ctx: Any) -> dict[str, float]:
    if ctx.config.get("hold_first_attempt") and os.environ.get("LAUNCH_ATTEMPT") == "1":
        time.sleep(120)  # until a preemption (SIGINT) interrupts it
    rows = json.loads((ctx.data_dir / "rows.json").read_text())["rows"]
    _record("evaluate", step=ctx.checkpoint_step, rows=rows)
    return {"checkpoint_step": ctx.checkpoint_step, "rows": rows,
            "has_accelerator": float(ctx.accelerator is not None)}
