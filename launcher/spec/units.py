"""Durations and sizes as the spec writes them: `90s`/`30m`/`4h` or int seconds; `512MiB`/`32GiB` or int MiB."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^([0-9]+)(s|m|h)$")
_SIZE = re.compile(r"^([1-9][0-9]*)(MiB|GiB)$")
_SECONDS = {"s": 1, "m": 60, "h": 3600}
_MIB = {"MiB": 1, "GiB": 1024}


def seconds(value: int | str) -> int | None:
    """A duration in seconds, or None if `value` is not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    match = _DURATION.match(value) if isinstance(value, str) else None
    return int(match[1]) * _SECONDS[match[2]] if match else None


def mebibytes(value: int | str) -> int | None:
    """A size in MiB, or None if `value` is not a size."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    return int(match[1]) * _MIB[match[2]] if match else None


def human_seconds(total: float) -> str:
    """The shortest exact spelling past a minute: 14400 -> '4h', 90 -> '90s', 60 -> '60s'."""
    total = int(total)
    for unit in ("h", "m"):
        if total > 60 and total % _SECONDS[unit] == 0:
            return f"{total // _SECONDS[unit]}{unit}"
    return f"{total}s"


def rough_duration(total: float) -> str:
    """A long span for people, to the minute: 173010 -> '48h 3m', 7805 -> '2h 10m', 90 -> '90s'."""
    total = int(total)
    if total < 3600:
        return human_seconds(total)
    hours, minutes = divmod(total // 60, 60)
    return f"{hours}h {minutes}m" if minutes else f"{hours}h"
