"""One run of a job at a time: a lease file in the job's folder on the volume.

`<mount>/<job>/lease.json` names the call that holds the job (Modal's function call id; the
local supervisor's run id), its owner (pid and host), since when, and its last heartbeat.
A run takes the lease at the start of `train`, after `reload()`, with its call id known:

- nobody holds it, or the holder is this very call (a retry or a restarted preemption of the
  same Modal call: same call id), or the holder is stale: take it (write, commit);
- anyone else: refuse, in one line naming the holder (LeaseHeld, a permanent failure).

The holder writes a heartbeat with each commit. A lease is stale after three commit
intervals without one. The commit interval is `checkpoint.every` when set (commits come at
least that often); with a step-only cadence it is the longest time this run has taken
between two commits so far, and until its first commit the attempt's timeout (no attempt
lives longer). The holder writes its own staleness limit into the lease, so a reader needs no
spec to judge it. A run that ends (finished, or a permanent failure) releases the lease.

A pipeline's driver holds the lease for the whole pipeline, under its own call id, with a
fixed staleness limit: its own timeout (no attempt of it lives longer, and a restarted one
takes the lease again at once). Its stages `join` it: a stage call given the driver's call id
works under the driver's lease instead of taking its own; its heartbeats keep the driver's
call id, since and staleness limit, and it never releases the lease (the driver does, at the
end). A stage given no driver id (called on its own) takes the lease for itself, as train does.

What it does not do: Modal volumes have no compare-and-swap, so two runs that start in the
same instant can both take it; the lease stops a second run from starting while a first is
alive, which is how one run lost its checkpoints to another.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from launcher.runtime import events
from launcher.runtime.failures import PermanentError
from launcher.runtime.storage.volume import Volume, guarded

LEASE = "lease.json"
STALE_INTERVALS = 3


class LeaseHeld(PermanentError):
    """Another live run holds this job's lease."""


@dataclass(frozen=True)
class Holder:
    call_id: str
    owner: str  # "pid 123 on host"
    since: float  # seconds since the epoch
    heartbeat: float
    stale_after_s: float

    def describe(self, now: float) -> str:
        return (f"call {self.call_id} ({self.owner}) since {_utc(self.since)}, "
                f"last heartbeat {now - self.heartbeat:.0f} s ago")

    def stale(self, now: float) -> bool:
        return now - self.heartbeat > self.stale_after_s


def read(folder: Path) -> Holder | None:
    """The lease in `folder`, or None; an unreadable one counts as none (it protects nothing)."""
    try:
        data = json.loads((folder / LEASE).read_text("utf-8"))
        return Holder(**{k: data[k] for k in Holder.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _utc(epoch: float) -> str:
    when = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


class Lease:
    def __init__(self, folder: Path, volume: Volume, *, job: str, volume_name: str,
                 every_s: int | None, timeout_s: int, stale_s: float | None = None) -> None:
        """`stale_s`: a fixed staleness limit (the driver's), instead of one from the commit
        interval."""
        self.folder, self.volume = folder, volume
        self.job, self.volume_name = job, volume_name
        self.call_id = ""
        self.every_s, self.timeout_s = every_s, timeout_s
        self.since = 0.0
        self.last_beat = 0.0
        self.longest_interval = 0.0
        self.fixed_s = stale_s
        self.held = False
        self.joined = False  # working under another call's lease (a pipeline's driver)
        # Called with each heartbeat, before the commit it goes with (the run's record).
        self.on_beat: Callable[[], None] | None = None

    def acquire(self, call_id: str) -> None:
        """Take the lease for `call_id` or raise LeaseHeld; the volume was reloaded just before."""
        now = time.time()
        if self._holder_unless_held(call_id, now) is not None:
            events.log(f"lease of job {self.job} taken over from an earlier attempt of call {call_id}")
        self.call_id = call_id
        self.since = now
        self._take(now)

    def join(self, holder_id: str) -> None:
        """Work under the lease of `holder_id` (a pipeline's driver) or raise LeaseHeld: another
        live call holds it. Nobody, or a stale call: it is taken for `holder_id`. Each join is a
        heartbeat (written, committed); `release` leaves the lease to its holder."""
        now = time.time()
        holder = self._holder_unless_held(holder_id, now)
        self.call_id, self.joined = holder_id, True
        if holder is not None:  # its heartbeats keep the holder's since and staleness limit
            self.since, self.fixed_s = holder.since, holder.stale_after_s
        else:
            self.since = now
        self._take(now)

    def _holder_unless_held(self, call_id: str, now: float) -> Holder | None:
        """The lease's holder when it is `call_id`; None when nobody or a stale call holds it
        (said in the log); LeaseHeld when another live call does."""
        holder = read(self.folder)
        if holder is None or holder.call_id == call_id:
            return holder
        if not holder.stale(now):
            raise LeaseHeld(self._held_message(holder, now))
        events.log(f"taking over the lease of job {self.job} from {holder.describe(now)}: "
                    f"stale after {holder.stale_after_s:.0f} s without one")
        return None

    def _take(self, now: float) -> None:
        self.last_beat = now
        self._write(now)
        self._commit()
        self.held = True

    def beat(self) -> None:
        """Record a heartbeat; the caller commits (a heartbeat goes with each commit)."""
        if not self.held:
            return
        now = time.time()
        self.longest_interval = max(self.longest_interval, now - self.last_beat)
        self.last_beat = now
        self._write(now)
        if self.on_beat is not None:
            self.on_beat()

    def release(self) -> None:
        """The run is over: remove the lease, if it is still ours, and commit."""
        if not self.held:
            return
        self.held = False
        if self.joined:
            return  # the driver's: it releases the lease when the pipeline ends
        holder = read(self.folder)
        if holder is not None and holder.call_id == self.call_id:
            (self.folder / LEASE).unlink()
            self._commit()

    def _commit(self) -> None:
        guarded(self.volume.commit, f"checkpoint.volume {self.volume_name}: commit")

    def stale_after_s(self) -> float:
        if self.fixed_s is not None:
            return float(self.fixed_s)
        interval = self.every_s or self.longest_interval or self.timeout_s
        return float(STALE_INTERVALS * interval)

    def _write(self, now: float) -> None:
        holder = Holder(self.call_id, f"pid {os.getpid()} on {socket.gethostname()}", self.since,
                        now, self.stale_after_s())
        record: dict[str, Any] = {**asdict(holder), "job": self.job,
                                  "heartbeat_utc": _utc(now), "since_utc": _utc(self.since)}
        self.folder.mkdir(parents=True, exist_ok=True)
        # A new file renamed into place: never rewrite a file on the volume in place.
        tmp = self.folder / f".tmp-{LEASE}-{os.getpid()}"
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True), "utf-8")
        os.replace(tmp, self.folder / LEASE)

    def _held_message(self, holder: Holder, now: float) -> str:
        return (f"{self.job}: already running on volume {self.volume_name}: "
                f"{holder.describe(now)}; wait for it to end or stop it (if it is gone, its lease "
                f"goes stale {holder.stale_after_s:.0f} s after its last heartbeat, or remove "
                f"{self.job}/{LEASE} from the volume)")
