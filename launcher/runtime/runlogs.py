"""A run's own folder of logs, named by its id: tracker files, `errors.log`, and what else the
run writes as it goes.

    <local root>/<run id>/         written while the run goes, on local disk (an open file on a
                                   Modal Volume blocks its reload): locally the kept
                                   `.launch/runs/<job>/` (LAUNCH_RUN_DIR), in a container a
                                   temporary folder
    <job's folder>/runs/<run id>/  its copy on the volume, made with each checkpoint (in the
                                   same commit) and when an attempt fails

Every attempt and stage of a run writes into its folder (a retry's or a resume's tracker
files beside the first attempt's), and each run into its own, so TensorBoard pointed at
either root shows the runs of a job side by side. `errors.log` keeps every traceback of every
attempt, as pre-commit keeps pre-commit.log: a container starts from the volume's copy, so
what it copies back never drops an earlier attempt's entries.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from launcher.runtime.failures import ERROR_LOG, keep_traceback
from launcher.runtime.storage.tree import copy_as_new_file

RUNS = "runs"  # in the job's folder on the volume


def folder_name(run_id: str) -> str:
    """`run_id` as a folder name (and a W&B run id): letters, digits, '-' and '_'."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", run_id) or "run"


class RunLogs:
    def __init__(self, local_root: Path, job_dir: Path, volume: str, kept_locally: bool) -> None:
        """`local_root`: where runs of the job write (one folder each); `job_dir`: the job's
        folder on the mounted volume; `volume`: its name, to name files on it in messages;
        `kept_locally`: the local root is kept after the run (a local run), so messages name
        the files there."""
        self.local_root = local_root
        self.volume_root = job_dir / RUNS
        self.job, self.volume, self.kept_locally = job_dir.name, volume, kept_locally
        self.run_id = ""

    def begin(self, run_id: str) -> None:
        """The run this process works for, known once its call is (not in enter hooks on
        Modal). Its errors.log starts from the volume's copy when that holds more."""
        self.run_id = folder_name(run_id)
        local, kept = self.folder / ERROR_LOG, self.mirror / ERROR_LOG
        try:
            if kept.is_file() and (not local.is_file() or kept.stat().st_size > local.stat().st_size):
                self.folder.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(kept, local)
        except OSError:
            pass  # the volume's copy is a convenience: the run goes on without it

    @property
    def folder(self) -> Path:
        """This run's folder on local disk."""
        return self.local_root / (self.run_id or "run")

    @property
    def mirror(self) -> Path:
        """This run's folder on the volume."""
        return self.volume_root / (self.run_id or "run")

    def sync(self) -> None:
        """Copy the run's folder to the volume (committed by the caller's next commit). Links are
        left out: W&B's `latest-run` would copy its run twice."""
        if self.folder.is_dir():
            shutil.copytree(self.folder, self.mirror, dirs_exist_ok=True, copy_function=copy_as_new_file,
                            ignore=lambda d, names: [n for n in names if os.path.islink(os.path.join(d, n))])

    def keep(self, exc: BaseException) -> str:
        """Append `exc`'s full traceback to the run's errors.log, and copy the run's folder to
        the volume (committed by the container's final commit); where to read it (a path here, or the file on the volume, named from its top)."""
        log = keep_traceback(exc, self.folder, f"run {self.run_id or '?'}")
        where = str(log) if self.kept_locally else \
            f"{self.volume}:{self.job}/{RUNS}/{self.run_id}/{ERROR_LOG} (checkpoint.volume)"
        self.sync()  # the tracker files so far too: what led up to the failure
        exc.launch_log = where  # type: ignore[attr-defined]  # kept: never twice
        return where
