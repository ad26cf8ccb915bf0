"""The checkpoint volume as the runtime sees it: `commit()` and `reload()`, nothing more.

On Modal the generated app passes its `modal.Volume`; locally the worker passes a
`LocalVolume`. The runtime never imports modal and never asks a volume for anything else,
so another kind of volume is a new class here, not new branches in the session, the loop or
the checkpoint manager.

What a caller may rely on, as on Modal: files written under the mount are durable and
visible to other containers only after `commit()`; writes not committed are lost when the
container dies; `reload()` shows other containers' commits (this container's uncommitted
changes stay, shadowing them) and must not run while this process holds files open there.

`LocalVolume` keeps those semantics on a local directory, so the commit boundary is tested
every time `--local` runs. The committed state is the volume's folder (what a user sees,
`.launch/volumes/NAME/`); each attempt works in its own working copy, a hard-link clone of
it. `commit()` applies this working copy's own changes since its last commit or reload
(files added, replaced, deleted) to the committed folder; two workers of different jobs on
one volume therefore never undo each other. The supervisor throws the working copy away when
the attempt ends, so whatever was not committed is lost, as on Modal.

Hard links share the file itself with the committed state: write new files and rename them
into place (as the checkpoint store does), never rewrite an existing file in place.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from launcher.runtime import protocol, tree
from launcher.runtime.failures import LauncherBug, VolumeError


class Volume(Protocol):
    def commit(self) -> None: ...

    def reload(self) -> None: ...


def guarded(operation: Callable[[], None], what: str) -> None:
    """Run a volume's `commit` or `reload`: its failure is the volume's (a VolumeError, which is
    retried, with the failure's errno), never taken for the job's own; a bug in launcher's own
    volume code is a LauncherBug, which no retry fixes."""
    try:
        operation()
    except Exception as exc:
        if protocol.launchers_bug(exc):
            raise LauncherBug.of(exc) from exc
        raise VolumeError(f"{what} failed: {type(exc).__name__}: {exc}",
                          getattr(exc, "errno", None)) from exc


class LocalVolume:
    """Modal's commit/reload semantics on a local folder: `committed` is what others see,
    `path` this process's working copy (the mount, as the runtime sees it)."""

    def __init__(self, committed: Path, path: Path) -> None:
        self.committed = committed
        self.path = path
        self.commits = 0
        committed.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(path, ignore_errors=True)
        self._base = tree.clone(committed, path)

    def commit(self) -> None:
        """Make this working copy's changes since the last commit or reload visible to others."""
        now = tree.snapshot(self.path)
        tree.apply(tree.diff(self._base, now), self.path, self.committed, self._scratch())
        self._base = now
        self.commits += 1

    def reload(self) -> None:
        """See the latest committed state; changes not yet committed are kept on top of it."""
        pending = tree.diff(self._base, tree.snapshot(self.path))
        scratch = self._scratch()
        fresh, old = scratch / "reload", scratch / "old"
        base = tree.clone(self.committed, fresh)
        (scratch / "apply").mkdir()
        tree.apply(pending, self.path, fresh, scratch / "apply")
        os.rename(self.path, old)
        os.rename(fresh, self.path)
        shutil.rmtree(old, ignore_errors=True)
        self._base = base

    @staticmethod
    def from_environment() -> LocalVolume:
        """The volume a local worker was given: LAUNCH_VOLUME (committed), LAUNCH_CHECKPOINT_DIR
        (its working copy)."""
        return LocalVolume(Path(os.environ["LAUNCH_VOLUME"]), Path(os.environ["LAUNCH_CHECKPOINT_DIR"]))

    @staticmethod
    def discard(path: Path) -> None:
        """Throw a working copy away (the attempt that used it is over), with its scratch."""
        for folder in (path, _scratch_of(path)):
            shutil.rmtree(folder, ignore_errors=True)

    def _scratch(self) -> Path:
        """Room beside the working copy (same filesystem, so renames and links work)."""
        scratch = _scratch_of(self.path)
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        return scratch


def _scratch_of(path: Path) -> Path:
    return path.with_name(path.name + ".scratch")
