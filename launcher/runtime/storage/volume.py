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

Locally a commit changes nothing outside its job's folder (`job`): a working copy holds every
job's folder, and what it lacks there (a user cleaned `@work` while the run went on, another
run's cleanup took it) must never be taken for deletions. Before each commit and reload the
working copy is checked to be the one this object made, and the job's folder in it the one it
saw last: a working copy removed or replaced under it fails the attempt (a VolumeError, in one
line) and the volume stays as it was. A storage failure (full disk, read-only) is the user's:
a StorageError, not retried.

Hard links share the file itself with the committed state: write new files and rename them
into place (as the checkpoint store does), never rewrite an existing file in place.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from launcher.runtime import events
from launcher.runtime.failures import LauncherBug, VolumeError, launchers_bug
from launcher.runtime.settings import ENV, RuntimeSettings
from launcher.runtime.storage import disk, tree


class Volume(Protocol):
    def commit(self) -> None: ...

    def reload(self) -> None: ...


def guarded(operation: Callable[[], None], what: str) -> None:
    """Run a volume's `commit` or `reload`: its failure is the volume's (a VolumeError, which is
    retried, with the failure's errno), never taken for the job's own; a bug in launcher's own
    volume code is a LauncherBug, which no retry fixes."""
    try:
        operation()
    except (VolumeError, disk.StorageError):
        raise  # said in full already
    except Exception as exc:
        if launchers_bug(exc):
            raise LauncherBug.of(exc) from exc
        raise VolumeError(f"{what} failed: {type(exc).__name__}: {exc}",
                          getattr(exc, "errno", None)) from exc


class LocalVolume:
    """Modal's commit/reload semantics on a local folder: `committed` is what others see,
    `path` this process's working copy (the mount, as the runtime sees it)."""

    def __init__(self, committed: Path, path: Path, job: str | None = None) -> None:
        """`job`: the folder (relative to the volume) that commits may change; None: all of it."""
        self.committed = committed
        self.path = path
        self.job = job
        self.commits = 0
        with self._storage("cannot make a working copy of the volume"):
            committed.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(path, ignore_errors=True)
            self._base = tree.clone(committed, path)
        self.damaged = False  # said once; never committed from again
        self._held = _Held(path, job)

    def commit(self) -> None:
        """Make this working copy's changes since the last commit or reload visible to others."""
        if self.damaged:
            return  # said when found: the container's final commit does not say it again
        self._check_intact("committed")
        now = tree.snapshot(self.path)
        with self._storage("cannot commit to the volume"):
            tree.apply(self._own(tree.diff(self._base, now)), self.path, self.committed, self._scratch())
        self._base = now
        self._held.see_job()
        self.commits += 1

    def reload(self) -> None:
        """See the latest committed state; changes not yet committed are kept on top of it."""
        self._check_intact("reloaded")
        pending = self._own(tree.diff(self._base, tree.snapshot(self.path)))
        with self._storage("cannot reload the volume"):
            scratch = self._scratch()
            fresh, old = scratch / "reload", scratch / "old"
            base = tree.clone(self.committed, fresh)
            (scratch / "apply").mkdir()
            tree.apply(pending, self.path, fresh, scratch / "apply")
            os.rename(self.path, old)
            os.rename(fresh, self.path)
            shutil.rmtree(old, ignore_errors=True)
        self._base = base
        self._held.close()
        self._held = _Held(self.path, self.job)

    def _own(self, changes: tree.Changes) -> tree.Changes:
        """The job's own changes; the rest is said once and never committed."""
        if self.job is None:
            return changes
        kept, others = tree.inside(changes, self.job)
        if others:
            more = f" and {len(others) - 1} more" if len(others) > 1 else ""
            events.log(f"warning: {self.committed / others[0]}{more}: changed outside the folder "
                       f"of job {self.job} in its working copy; not committed (a job commits its "
                       "own folder only)")
        return kept

    def _check_intact(self, what: str) -> None:
        """The working copy is the one this object made, the job's folder the one it saw last
        (or none was there): anything else is not this job's changes, and is never applied."""
        if not self._held.intact():
            self.damaged = True
            raise VolumeError(
                f"{self.path}: this attempt's working copy of the volume was removed or replaced "
                f"while it ran; not {what}: the volume is as it was (the changes since its last "
                "commit are lost; the next attempt starts from that commit)")

    @contextlib.contextmanager
    def _storage(self, what: str) -> Iterator[None]:
        """A storage failure (full disk, read-only, another filesystem) is the user's to fix."""
        try:
            yield
        except OSError as exc:
            found = disk.error(exc, what, named=self.committed)
            if found is None:
                raise
            raise found from exc

    @staticmethod
    def of(settings: RuntimeSettings, job: str | None = None) -> LocalVolume:
        """The volume a local worker was given: `settings.volume` (committed), its
        `checkpoint_dir` (its working copy); its commits change `job`'s folder only."""
        if settings.volume is None or settings.checkpoint_dir is None:
            raise KeyError(ENV["volume"] if settings.volume is None else ENV["checkpoint_dir"])
        return LocalVolume(settings.volume, settings.checkpoint_dir, job)

    @staticmethod
    def in_use(path: Path) -> bool:
        """Whether a live process holds the working copy at `path` (see _Held)."""
        fd = _open(path)
        if fd is None:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

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


class _Held:
    """The working copy's folder and the job's folder in it, held open: a folder removed and made
    again under the same path is then another folder (its inode cannot be reused while held).
    The working copy's folder is locked too (`fcntl.flock`, dropped by the kernel when every
    process holding it is gone): another run's cleanup never takes a working copy in use."""

    def __init__(self, path: Path, job: str | None) -> None:
        self.paths = [path] + ([path / job] if job is not None else [])
        self.fds: list[int | None] = [_open(p) for p in self.paths]
        self._closer = weakref.finalize(self, _close, self.fds)
        if self.fds[0] is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self.fds[0], fcntl.LOCK_EX | fcntl.LOCK_NB)

    def see_job(self) -> None:
        """The job's folder, once there (the run's first commit may have made it)."""
        if len(self.fds) > 1 and self.fds[1] is None:
            self.fds[1] = _open(self.paths[1])

    def intact(self) -> bool:
        return self.fds[0] is not None and all(
            fd is None or _same(fd, path) for fd, path in zip(self.fds, self.paths))

    def close(self) -> None:
        self._closer()


def _open(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link where a folder should be
            return None
        raise


def _same(fd: int, path: Path) -> bool:
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)


def _close(fds: list[int | None]) -> None:
    for fd in fds:
        if fd is not None:
            os.close(fd)


def _scratch_of(path: Path) -> Path:
    return path.with_name(path.name + ".scratch")
