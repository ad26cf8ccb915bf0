"""Log lines from the runtime: plain text for people, plus machine-readable events locally.

Only the global rank 0 speaks. The local supervisor sets LAUNCH_EVENTS=1 and reads the
`@@launch {json}` lines (progress bar, summary); on Modal the plain lines are the log.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from launcher.runtime import timeline

PREFIX = "@@launch "


def _is_rank0() -> bool:
    return os.environ.get("RANK", "0") == "0"


def log(message: str) -> None:
    if _is_rank0():
        print(f"[launch] {message}", file=sys.stderr, flush=True)


def emit(event: str, **data: Any) -> None:
    if _is_rank0() and os.environ.get("LAUNCH_EVENTS") == "1":
        print(PREFIX + json.dumps({"event": event, **data}, sort_keys=True), flush=True)


@contextmanager
def timed(stage: str, times: dict[str, float]) -> Iterator[None]:
    """Time a stage, log it, and keep it in `times` for the summary."""
    start = time.perf_counter()
    yield
    times[stage] = time.perf_counter() - start
    timeline.mark(stage)
    log(f"{stage} took {times[stage]:.3f} s")
    emit("stage", stage=stage, seconds=times[stage])
