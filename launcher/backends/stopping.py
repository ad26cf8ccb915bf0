"""`launch stop RUN`: find the run and ask it to stop, here or on Modal.

Locally a running run is a job lock that is held (backends/jobfolder.py: `@locks/VOLUME/JOB`
names the supervisor's pid, host and run id; the kernel holds the lock while it lives). The
request goes into `@control/` beside the locks (runtime/control/stop.py), then SIGUSR1 tells the
supervisor: graceful, the worker's loop ends after its next update with a final checkpoint and
the stage ends as stopped; `--now`, the supervisor kills the worker's process group. Either
way no further attempt or stage starts and the job's lease is released.

On Modal a run is its function call (the id `launch --detach` prints: the training call, or a
pipeline's driver). Graceful: the request goes into the `modal.Dict` the app's loop asks.
`--now`: `FunctionCall.cancel(terminate_containers=True)`, and, when the job is known (its
spec), the lease the call held is removed from the volume and a pipeline's running stage call
is cancelled too, so the next launch is not blocked until the lease goes stale.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher.backends.local import control_dir
from launcher.errors import RunError
from launcher.runtime import lease
from launcher.runtime.control.stop import STOP_DICT, FolderRequests, StopRequest


@dataclass(frozen=True)
class LocalRun:
    run: str
    volume: str
    job: str
    pid: int
    host: str
    running: bool


def local_runs(volumes: Path) -> Iterator[LocalRun]:
    """Every job lock under `volumes`, with the run that holds (or last held) it."""
    locks = volumes / "@locks"
    for path in sorted(locks.glob("*/*")) if locks.is_dir() else []:
        try:
            record = json.loads(path.read_text("utf-8"))
            yield LocalRun(str(record["run"]), path.parent.name, path.name, int(record["pid"]),
                           str(record["host"]), _held(path))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a lock being written, or damaged: it names no run


def _held(path: Path) -> bool:
    """Whether a live supervisor holds the lock (a shared lock cannot be had while it does)."""
    with open(path, encoding="utf-8") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(file, fcntl.LOCK_UN)
        return False


def find_local(volumes: Path, run: str) -> LocalRun | None:
    """The local run whose id is `run` or starts with it; None: no such run here."""
    found = [r for r in local_runs(volumes) if r.run == run or r.run.startswith(run)]
    exact = [r for r in found if r.run == run]
    if exact or len(found) == 1:
        return (exact or found)[0]
    if found:
        raise RunError(f"{run}: names {len(found)} runs here ({', '.join(r.run for r in found)}); "
                       "give more of the id")
    return None


def stop_local(volumes: Path, found: LocalRun, now: bool) -> str:
    """Ask the local run `found` to stop; what to tell the user."""
    what = f"run {found.run} of job {found.job}"
    if not found.running:
        raise RunError(f"{found.run}: {what} has ended; nothing to stop")
    if found.host != socket.gethostname():
        raise RunError(f"{found.run}: {what} runs on host {found.host}; stop it there")
    FolderRequests(control_dir(volumes)).put(found.run, StopRequest.make(found.run, now).to_dict())
    try:
        os.kill(found.pid, signal.SIGUSR1)
    except ProcessLookupError:
        raise RunError(f"{found.run}: {what} has ended; nothing to stop") from None
    if now:
        return f"stopping {what} now: its worker is killed; a later launch resumes from its last commit"
    return f"stop asked of {what}: it stops after its current update, with a final checkpoint"


def stop_modal(run: str, now: bool, environment: str | None, job: Any = None) -> str:
    """Ask the Modal call `run` to stop; `job`: its JobSpec, when known (to release its lease)."""
    import modal

    call = _running_call(modal, run)
    where = {"environment_name": environment} if environment else {}
    if not now:
        requests = modal.Dict.from_name(STOP_DICT, create_if_missing=True, **where)
        requests.put(run, StopRequest.make(run, now=False).to_dict())
        return (f"stop asked of {run}: its loop sees it within a few seconds, then stops after "
                "its current update, with a final checkpoint")
    call.cancel(terminate_containers=True)
    if job is None:
        return (f"cancelled {run}; its lease of the job goes stale by itself (give the job's spec "
                "with --job to release it now)")
    said = _release_remote(modal, run, job, where)
    return f"cancelled {run}" + (f"; {said}" if said else "")


def _running_call(modal: Any, run: str) -> Any:
    """The function call `run`, refused in one line when it is unknown or has ended."""
    try:
        call = modal.FunctionCall.from_id(run)
        call.get(timeout=0)
    except (TimeoutError, modal.exception.TimeoutError):
        return call  # no result yet: it runs
    except modal.exception.NotFoundError:
        raise RunError(f"{run}: no such run (not a run here, nor a function call on Modal)") from None
    except modal.exception.AuthError:
        from launcher.backends.modal import CREDENTIALS_HELP

        raise RunError(f"{run}: {CREDENTIALS_HELP}") from None
    except Exception:  # noqa: BLE001  the call raised: it has ended, failed
        pass
    raise RunError(f"{run}: this run has ended; nothing to stop")


def _release_remote(modal: Any, run: str, job: Any, where: dict[str, str]) -> str:
    """After a cancel: a pipeline's stage calls cancelled too, and the lease the run held
    removed from the volume (if it is still the run's)."""
    volume = modal.Volume.from_name(job.checkpoint.volume, **where)
    said = []
    driver = _read_json(volume, f"{job.name}/driver.json")
    if driver.get("driver") == run:
        for stage, entry in (driver.get("stages") or {}).items():
            if isinstance(entry, dict) and entry.get("call") and "result" not in entry:
                modal.FunctionCall.from_id(entry["call"]).cancel(terminate_containers=True)
                said.append(f"stage {stage}'s call {entry['call']} cancelled")
    held = _read_json(volume, f"{job.name}/{lease.LEASE}")
    if held.get("call_id") == run:
        volume.remove_file(f"{job.name}/{lease.LEASE}")
        said.append(f"the lease of job {job.name} released")
    return ", ".join(said)


def _read_json(volume: Any, path: str) -> dict[str, Any]:
    try:
        found = json.loads(b"".join(volume.read_file(path)))
    except Exception:  # noqa: BLE001  missing (NotFoundError) or damaged: it says nothing
        return {}
    return found if isinstance(found, dict) else {}
