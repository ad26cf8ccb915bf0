"""The publisher: how a written checkpoint becomes the job's, durably, on the volume.

Public face: `Publisher(ctx).publish(step, write, extra)`, global rank 0 alone, in this order:
set aside (at its first publish) every checkpoint after the one this run started from, write
under a temporary name and publish atomically (`store.save`), mirror the run's tracker files
into the job's folder, heartbeat the job's lease and commit the volume, then apply retention
(so a failed deletion never costs the new checkpoint). `started_from(step)` tells it which
checkpoint the run resumed from; `copy_as_new_file` is how files reach the volume.

It neither builds nor loads state: what goes into a checkpoint is the manager's (`write`).
Imports no torch.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from launcher.runtime import events, faults
from launcher.runtime.checkpoint import store
from launcher.runtime.train.context import LoopContext


def _warn(message: str) -> None:
    events.log(f"warning: {message}")


class Publisher:
    def __init__(self, ctx: LoopContext) -> None:
        self.ctx = ctx
        self.start_step = 0  # the checkpoint this run resumed from (0: none): it writes after it
        self._cleared = False  # checkpoints after start_step were set aside (at the first publish)

    def started_from(self, step: int) -> None:
        self.start_step = step

    def publish(self, step: int, write: Callable[[Path], None], extra: dict[str, Any]) -> None:
        """Global rank 0 alone: write under a temp name, publish atomically, commit, then
        apply retention (so a failed deletion never costs the new checkpoint)."""
        root = self.ctx.checkpoints
        if not self._cleared:
            self._set_aside_newer(root)
        store.save(root, step, write, spec_hash=self.ctx.spec.hash, extra=extra)
        faults.point("published", step)
        self.mirror_logs()
        self.commit()
        faults.point("committed", step)
        try:
            store.retain(root, step, self.ctx.spec.checkpoint.keep_last)
        except store.CheckpointError as exc:
            _warn(str(exc))

    def _set_aside_newer(self, root: Path) -> None:
        """Checkpoints after the one this run started from (all of them, when it started
        fresh) are an earlier run's, or ones that failed to load: this run would overwrite
        them step by step and its retention delete them. Moved aside instead, under the lease."""
        moved = store.set_aside(root, self.start_step)
        self._cleared = True
        if moved is not None:
            folder, names = moved
            since = f"update {self.start_step}" if self.start_step else "scratch"
            # Named from the volume's top: the mount differs between containers (and locally, is
            # the attempt's working copy).
            where = f"{self.ctx.spec.checkpoint.volume}:{folder.relative_to(root.parent).as_posix()}"
            _warn(f"this run trains from {since}: {', '.join(names)} (not written by it) set aside "
                  f"in {where}, none overwritten or deleted")

    def commit(self) -> None:
        """Heartbeat the job's lease with each commit, then commit."""
        if self.ctx.lease is not None:
            self.ctx.lease.beat()
        self.ctx.volume.commit()

    def mirror_logs(self) -> None:
        """Tracker files go to the volume with each checkpoint, in the same commit."""
        if self.ctx.log_mirror is not None and self.ctx.run_dir.is_dir():
            shutil.copytree(self.ctx.run_dir, self.ctx.log_mirror, dirs_exist_ok=True,
                            copy_function=copy_as_new_file)


def copy_as_new_file(source: str, target: str) -> None:
    """Copy to a new file and rename it over the old one: a file on the volume is never
    rewritten in place (a working copy shares unchanged files with the committed state)."""
    tmp = f"{target}.tmp-{os.getpid()}"
    shutil.copy2(source, tmp)
    os.replace(tmp, target)
