"""Fault injection for the reliability tests: kill or interrupt this process at a named point.

Off unless LAUNCH_FAULT is set, e.g. `kill:step:7` (SIGKILL right after update 7) or
`int:written:2` (SIGINT in the 2nd checkpoint, after its files are written, before they are
published), or `enospc:written:1` (the disk fills up while the 1st checkpoint is written). Points: step, written (files written, not yet published), published (renamed
into place, not yet committed), committed. It fires only in attempt LAUNCH_FAULT_ATTEMPT
(default 1), so the retry that follows runs clean, as after a real crash.
"""

from __future__ import annotations

import errno
import os
import signal

_counts: dict[str, int] = {}
_SIGNALS = {"kill": signal.SIGKILL, "int": signal.SIGINT, "term": signal.SIGTERM}


def point(name: str, at: int | None = None) -> None:
    """Mark reaching `name`; `at` is the step for `step`, else the count of visits is used."""
    fault = os.environ.get("LAUNCH_FAULT")
    if not fault or os.environ.get("RANK", "0") != "0":
        return
    if os.environ.get("LAUNCH_ATTEMPT", "1") != os.environ.get("LAUNCH_FAULT_ATTEMPT", "1"):
        return
    kind, where, when = fault.split(":")
    if where != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if (at if at is not None else _counts[name]) != int(when):
        return
    if kind == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    os.kill(os.getpid(), _SIGNALS[kind])
