"""Log lines from the runtime: plain text for people, plus machine-readable events locally.

Only the global rank 0 speaks. The local supervisor sets LAUNCH_EVENTS=1 and reads the
`@@launch {json}` lines (progress bar, summary); on Modal the plain lines are the log.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from launcher.runtime.lifecycle import timeline
from launcher.runtime.settings import ENV

PREFIX = "@@launch "


def _is_rank0() -> bool:
    return os.environ.get("RANK", "0") == "0"


# The checkpoint writer's thread speaks too, and locally stdout and stderr share one pipe: a
# line goes out in one write, never two (print writes the newline apart), one thread at a time.
_LINES = threading.RLock()  # re-entrant: a signal handler may log while a line is written


def _line(stream: TextIO, text: str) -> None:
    with _LINES:
        stream.write(text + "\n")
        stream.flush()


def log(message: str) -> None:
    if _is_rank0():
        _line(sys.stderr, f"[launch] {message}")


def emit(event: str, **data: Any) -> None:
    if _is_rank0() and os.environ.get(ENV["events"]) == "1":
        _line(sys.stdout, PREFIX + json.dumps({"event": event, **data}, sort_keys=True))


@contextmanager
def timed(stage: str, times: dict[str, float]) -> Iterator[None]:
    """Time a stage, log it, and keep it in `times` for the summary."""
    start = time.perf_counter()
    yield
    times[stage] = time.perf_counter() - start
    timeline.mark(stage)
    log(f"{stage} took {times[stage]:.3f} s")
    emit("stage", stage=stage, seconds=times[stage])
