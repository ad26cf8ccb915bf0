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
    tmp = ctx.data_dir / ".tmp-rows.json"
    tmp.write_text(json.dumps({"rows": ctx.config.get("rows", 3), "seed": ctx.seed}))
    os.replace(tmp, ctx.data_dir / "rows.json")
    _record("prepare", rows=ctx.config.get("rows", 3))
    return {"rows": ctx.config.get("rows", 3)}


def evaluate(ctx: Any) -> dict[str, float]:
    if ctx.config.get("hold_first_attempt") and os.environ.get("LAUNCH_ATTEMPT") == "1":
        time.sleep(120)  # until a preemption (SIGINT) interrupts it
    rows = json.loads((ctx.data_dir / "rows.json").read_text())["rows"]
    _record("evaluate", step=ctx.checkpoint_step, rows=rows)
    return {"checkpoint_step": ctx.checkpoint_step, "rows": rows,
            "has_accelerator": float(ctx.accelerator is not None)}
