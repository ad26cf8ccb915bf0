"""Wall-clock marks of a local run's start-up and exit, for `bench/startup.py`.

Off unless LAUNCH_TIMELINE names a file. Each process (the supervisor and its workers) then
appends one JSON line per mark: the phase, `time.time()` and its pid. Wall-clock time, not a
monotonic clock, because the marks of different processes are compared with each other and
with the moment the bench started the command. A mark costs one environment lookup when off.
"""

from __future__ import annotations

import json
import os
import time

from launcher.runtime.settings import ENV as NAMES

ENV = NAMES["timeline"]


def enabled() -> bool:
    """Whether marks are written (figures that cost something to gather are gathered only then)."""
    return bool(os.environ.get(ENV))


def mark(phase: str, **data: float) -> None:
    """`data`: figures that belong to the moment (a process's memory, say)."""
    path = os.environ.get(ENV)
    if not path:
        return
    line = json.dumps({"phase": phase, "time": time.time(), "pid": os.getpid(), **data}) + "\n"
    # One write on a file opened for appending: lines of concurrent processes never mix.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
