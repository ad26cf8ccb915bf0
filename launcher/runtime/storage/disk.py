"""Storage failures said as what they are: the user's disk is full, read-only, or split.

A full disk, a read-only filesystem, a quota or a volume split across filesystems is not a bug
in the job and not a passing hiccup: a retry on the same storage fails the same way, so it is a
`StorageError` (permanent: no retry is spent on it), reported in one line that names the path
first, then the cause and what to do.

Libraries do not always pass the OS error on: torch's zip writer reports a full disk as
"enforce fail at inline_container.cc ... unexpected pos", and Rust libraries (safetensors) as
"... (os error 28)". So the cause is taken from the exception chain when it carries an errno,
and otherwise, where the failed write's folder is known, asked of the filesystem itself: a
read-only mount, or (almost) no space left.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from launcher.runtime import settings
from launcher.runtime.failures import PermanentError

# errno -> (cause, what to do); what a retry on the same storage cannot fix
CAUSES = {
    errno.ENOSPC: ("no space left on device", "free space there, then launch again"),
    errno.EDQUOT: ("disk quota exceeded", "free space there, then launch again"),
    errno.EFBIG: ("file too large for the filesystem or the process's limit (ulimit -f)",
                  "raise the limit, then launch again"),
    errno.EROFS: ("read-only file system", "make it writable, then launch again"),
    errno.EXDEV: ("on another filesystem than the rest of the volume",
                  "keep the volumes folder on one filesystem, then launch again"),
}
# Less than this is free after a failed write: the write failed because the disk is full.
FULL_BYTES = 1 << 20
_OS_ERROR = re.compile(r"os error (\d+)")


class StorageError(PermanentError):
    """The storage under a path refuses the write; a retry would fail the same way."""


def errno_of(exc: BaseException) -> tuple[int, str | None] | None:
    """A storage errno in `exc` or what caused it, with the path the OS error names (if any)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in CAUSES:
            return current.errno, _filename(current)
        found = _OS_ERROR.search(str(current))
        if found and int(found[1]) in CAUSES:
            return int(found[1]), None
        current = current.__cause__ or current.__context__
    return None


def _filename(exc: OSError) -> str | None:
    name = exc.filename2 if exc.errno == errno.EXDEV and exc.filename2 else exc.filename
    return None if name is None else os.fsdecode(name)


def filesystem_cause(where: Path) -> int | None:
    """What the filesystem holding `where` says after a write there failed for no named reason."""
    path = where
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    if stat.f_flag & os.ST_RDONLY:
        return errno.EROFS
    if stat.f_bavail * stat.f_frsize < FULL_BYTES:
        return errno.ENOSPC
    return None


def error(exc: BaseException, what: str, where: Path | None = None, *,
          named: Path | None = None, otherwise: Path | None = None) -> StorageError | None:
    """A StorageError for `exc` (what failed: `what`), or None when storage is not the cause.

    `where`: the folder being written. When the exception names no errno, its filesystem is
    asked (a library's write failure, OSError or RuntimeError, on a full or read-only disk);
    when it names one but no path, `where` is named if its filesystem says the same. The line
    names `named` first, else that path, else `otherwise`."""
    found = errno_of(exc)
    code, path = found if found is not None else (None, None)
    if code is None and where is not None and isinstance(exc, (OSError, RuntimeError)):
        code = filesystem_cause(where)
        path = str(where) if code is not None else None
    if code is None:
        return None
    if path is None and where is not None and filesystem_cause(where) == code:
        path = str(where)
    cause, remedy = CAUSES[code]
    place = named or (Path(path) if path is not None else otherwise)
    text = f"{what}: {cause}; a retry would fail the same way: {remedy}"
    return StorageError(f"{shown(place)}: {text}" if place is not None else text)


def shown(path: Path) -> Path:
    """`path` as the user knows it: in a local worker's working copy of the volume, the same path
    in the volume's own folder (the same filesystem: working copies are hard links)."""
    found = settings.current()
    work, volume = found.checkpoint_dir, found.volume
    if work and volume:
        try:
            return Path(volume) / Path(path).relative_to(work)
        except ValueError:
            pass
    return Path(path)
