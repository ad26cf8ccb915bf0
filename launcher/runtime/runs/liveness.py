"""A record that says `running` is believed only while its coordinator shows a sign of life.

A run killed without a word (kill -9, a lost host) cannot write its end; its record stays
`running`. Readers call `effective_status` with what they know of the coordinator: locally,
whether its process is alive (same host) or else whether the job's lease still names the run
with a fresh heartbeat; on Modal, whether its function call is still running. Nobody alive:
`dead`. Unknown (Modal unreachable): the record's word stands.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from launcher.runtime.runs.record import RunRecord


def effective_status(record: RunRecord, alive: bool | None) -> str:
    if record.status != "running" or alive is None:
        return record.status
    return "running" if alive else "dead"


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def _pid_alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return started is None or process_start(pid) in (None, started)


def local_alive(record: RunRecord, job_dir: Path, now: float) -> bool:
    """A local run: its supervisor's process when it ran on this host; else the job's lease."""
    who = record.coordinator
    if who.get("host") == platform.node() and isinstance(who.get("pid"), int):
        return _pid_alive(who["pid"], who.get("pid_start"))
    return lease_alive(record, job_dir, now)


def lease_alive(record: RunRecord, job_dir: Path, now: float) -> bool:
    from launcher.runtime import lease  # only for runs of another host: it costs an import

    holder = lease.read(job_dir)
    return holder is not None and holder.call_id == record.run and not holder.stale(now)
