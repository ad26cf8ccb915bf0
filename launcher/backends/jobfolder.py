"""A job's folder on a local volume, as the supervisor holds it for one run (all its attempts).

    VOLUMES/NAME/JOB/          the job's committed checkpoints, lease.json, mirrored files
    VOLUMES/@locks/NAME/JOB    the run's lock (fcntl.flock): who holds it, since when
    VOLUMES/@work/NAME/...     one working copy per attempt, thrown away when it ends

'@' is not allowed in a volume name, so these can never be a volume. The lock is held by the
supervisor from before the first attempt to after the last, and the kernel drops it when the
supervisor dies, however it dies: a second `launch` of the same job on the same volume finds
it held and refuses in one line. Under it, the supervisor may clean what dead runs of this
job left: working copies, and a lease that names a run that is gone.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import IO

from launcher.errors import RunError
from launcher.runtime import lease
from launcher.runtime.checkpoint import store
from launcher.runtime.runs.record import RUNS
from launcher.runtime.storage.volume import LocalVolume


class JobLock:
    def __init__(self, volumes: Path, volume: str, job: str, run_id: str) -> None:
        self.path = volumes / "@locks" / volume / job
        self.volume, self.job, self.run_id = volume, job, run_id
        self.file: IO[str] | None = None

    def acquire(self) -> None:
        """Hold the lock or raise RunError naming its holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "a+", encoding="utf-8")  # "a+": never truncate another's record
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read()
            file.close()
            raise RunError(f"{self.job}: already running on volume {self.volume} "
                           f"({_describe(holder)}); wait for it to end or stop it") from None
        file.seek(0)
        file.truncate()
        now = time.time()
        file.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now,
                               "run": self.run_id}))
        file.flush()
        self.file = file

    def release(self) -> None:
        if self.file is not None:
            self.file.close()  # closing drops the lock
            self.file = None


def _describe(record: str) -> str:
    try:
        data = json.loads(record)
        since = datetime.datetime.fromtimestamp(data["since"], datetime.UTC)
        return f"launch pid {data['pid']} on {data['host']}, since {since:%Y-%m-%d %H:%M:%S} UTC"
    except (ValueError, KeyError, TypeError):
        return "another launch, starting"


def work_root(volumes: Path, volume: str) -> Path:
    return volumes / "@work" / volume


def work_copy(volumes: Path, volume: str, job: str, run_id: str, what: str) -> Path:
    """Where one process of a run (`what`: an attempt, the pipeline's driver) keeps its working
    copy of the volume; every name starts with the job's, so a later run finds leftovers."""
    return work_root(volumes, volume) / f"{job}@{run_id}-{what}"


def check_folders(volumes: Path, volume: str, job: str) -> None:
    """Refuse, in one line, what the local volume cannot keep safe: a job's folder that is a link
    (it may point out of the volume: writes through it would skip the commit, and cleaning it
    would reach what it points to), or a volume on another filesystem than its working copies
    (they are hard links of it)."""
    folder = volumes / volume / job
    if folder.is_symlink():
        raise RunError(f"{folder}: is a symbolic link (to {os.readlink(folder)}), not a folder on "
                       f"volume {volume}; links are never followed: replace it with a folder")
    work = work_root(volumes, volume)
    work.mkdir(parents=True, exist_ok=True)
    for path in (volumes / volume, folder):
        if path.is_dir() and path.stat().st_dev != work.stat().st_dev:
            raise RunError(f"{path}: on another filesystem than {work}, where each attempt keeps "
                           "its working copy (hard links of the volume): keep the volumes folder "
                           "on one filesystem (mount it whole, or pass --volumes-dir)")


def clean_after_dead_runs(volumes: Path, volume: str, job: str, run_id: str) -> list[str]:
    """Under the job's lock: drop working copies of this job's earlier runs, and a lease that
    names another run (it is gone: a live one would hold the lock). What was said, for the log."""
    said = []
    work = work_root(volumes, volume)
    copies = sorted(c for c in work.iterdir() if c.name.startswith(f"{job}@")) if work.is_dir() else []
    # The lock above is a file a user can remove: a working copy in use says a run is alive.
    if live := [c for c in copies if LocalVolume.in_use(c)]:
        raise RunError(f"{job}: already running on volume {volume} (its working copy {live[0]} is "
                       f"in use, although its lock in {volumes / '@locks'} is gone); wait for it "
                       "to end or stop it")
    for copy in copies:
        shutil.rmtree(copy, ignore_errors=True)
    folder = volumes / volume / job
    holder = lease.read(folder)
    if holder is not None and holder.call_id != run_id:
        (folder / lease.LEASE).unlink(missing_ok=True)
        said.append(f"the lease of an earlier run ({holder.call_id}, {holder.owner}) was left "
                    "behind by a run that is gone; taken over")
    return said


def release_lease(volumes: Path, volume: str, job: str, run_id: str) -> None:
    """The run is over: a lease it left (its last attempt failed or was stopped) goes."""
    folder = volumes / volume / job
    holder = lease.read(folder)
    if holder is not None and holder.call_id == run_id:
        (folder / lease.LEASE).unlink(missing_ok=True)


def archive(volumes: Path, volume: str, job: str) -> Path | None:
    """--fresh: move the job's folder aside (never delete it), outside the volume; its run
    records stay."""
    folder = volumes / volume / job
    if not folder.is_dir() or not any(p.name != RUNS for p in folder.iterdir()):
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = volumes / f"{volume}.{stamp}" / job
    suffix = 1
    while target.exists():
        suffix += 1
        target = volumes / f"{volume}.{stamp}-{suffix}" / job
    target.parent.mkdir(parents=True, exist_ok=True)
    folder.rename(target)
    # The job's run records are its history, not its state: they stay (`launch runs`).
    if (target / RUNS).is_dir():
        folder.mkdir()
        (target / RUNS).rename(folder / RUNS)
    return target


def top_level_notice(volumes: Path, volume: str, job: str) -> str | None:
    """Checkpoints an older launcher left at the volume's top level: never loaded; say how to
    move them into this job's folder."""
    root = volumes / volume
    found = store.top_level(root)
    if not found:
        return None
    names = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    return (f"warning: {root} holds checkpoints written by an older launcher at its top level "
            f"({names}); checkpoints now live in a folder per job, and these are not loaded. "
            f"To resume {job} from them: mkdir -p {root / job} && mv {root}/step-* {root / job}/")
