"""Folder trees as the local volume needs them: hard-link clones, snapshots, diffs, applying a diff.

A snapshot maps each path under a root (relative, POSIX) to its kind and inode. A file whose
inode is unchanged since a snapshot is the same file, because writers replace files rather
than rewrite them (see volume.py), so a diff of two snapshots of one working copy is exactly
what was added, replaced and deleted there in between.

Applying a diff keeps each piece atomic: a new folder appears whole (it is built beside the
target, then renamed in), a replaced file by `os.replace`, a deleted folder is renamed away
before it is removed. Additions go first, so a kill part-way leaves extra files, never a
checkpoint folder with files missing.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

DIR = -1  # the "inode" recorded for folders: only their presence matters

Snapshot = dict[str, int]  # relative path -> inode, or DIR


@dataclass
class Changes:
    files: list[str] = field(default_factory=list)  # added or replaced
    dirs: list[str] = field(default_factory=list)  # new folders
    deleted: list[str] = field(default_factory=list)  # the topmost paths removed

    def __bool__(self) -> bool:
        return bool(self.files or self.dirs or self.deleted)


def snapshot(root: Path) -> Snapshot:
    found: Snapshot = {}
    _walk(root, "", found)
    return found


def _walk(folder: Path, prefix: str, found: Snapshot) -> None:
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return
    for entry in entries:
        rel = prefix + entry.name
        if entry.is_dir(follow_symlinks=False):
            found[rel] = DIR
            _walk(Path(entry.path), rel + "/", found)
        else:
            found[rel] = entry.inode()


def clone(source: Path, target: Path) -> Snapshot:
    """Make `target` a hard-link clone of `source`; return the snapshot it was made from."""
    base = snapshot(source)
    target.mkdir(parents=True)
    for rel, inode in sorted(base.items()):
        if inode == DIR:
            (target / rel).mkdir(exist_ok=True)
            continue
        try:
            os.link(source / rel, target / rel, follow_symlinks=False)
        except FileNotFoundError:  # removed by another writer's commit meanwhile
            del base[rel]
    return base


def diff(before: Snapshot, after: Snapshot) -> Changes:
    changes = Changes()
    for rel, inode in sorted(after.items()):
        if before.get(rel) == inode and inode != DIR:
            continue
        if inode == DIR:
            if before.get(rel) != DIR:
                changes.dirs.append(rel)
        else:
            changes.files.append(rel)
    gone = {rel for rel, inode in before.items()
            if rel not in after or (inode == DIR) != (after[rel] == DIR)}
    changes.deleted = sorted(rel for rel in gone if _parent(rel) not in gone)
    return changes


def inside(changes: Changes, folder: str) -> tuple[Changes, list[str]]:
    """The changes at or under `folder` (a relative path), and the paths of those outside it."""
    def ours(rel: str) -> bool:
        return rel == folder or rel.startswith(folder + "/")

    kept = Changes([r for r in changes.files if ours(r)], [r for r in changes.dirs if ours(r)],
                   [r for r in changes.deleted if ours(r)])
    others = [r for r in (*changes.files, *changes.dirs, *changes.deleted) if not ours(r)]
    return kept, others


def _parent(rel: str) -> str:
    return rel.rpartition("/")[0]


def apply(changes: Changes, source: Path, target: Path, scratch: Path) -> None:
    """Make `target` hold `source`'s version of every path in `changes`."""
    names = (str(i) for i in count())
    new = set(changes.dirs)
    top = [d for d in changes.dirs if _parent(d) not in new]
    for folder in top:
        _add_folder(folder, changes, source, target, scratch / next(names))
    for rel in changes.files:
        if not _under(rel, top):
            _replace(source / rel, target / rel, scratch / next(names))
    for rel in changes.deleted:
        if rel not in new and rel not in changes.files:
            _remove(target / rel, scratch / next(names))
    for folder in {(target / rel).parent for rel in [*top, *changes.files, *changes.deleted]}:
        fsync_dir(folder)


def _under(rel: str, folders: list[str]) -> bool:
    return any(rel.startswith(folder + "/") for folder in folders)


def _add_folder(folder: str, changes: Changes, source: Path, target: Path, staging: Path) -> None:
    """Build the new folder beside the target, then rename it in: it appears whole."""
    staging.mkdir()
    for rel in changes.dirs:
        if rel.startswith(folder + "/"):
            (staging / rel[len(folder) + 1:]).mkdir(parents=True, exist_ok=True)
    for rel in changes.files:
        if rel.startswith(folder + "/"):
            os.link(source / rel, staging / rel[len(folder) + 1:], follow_symlinks=False)
    final = target / folder
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not final.is_dir():
        final.unlink()
    try:
        os.rename(staging, final)
    except OSError as exc:  # another writer made it meanwhile: merge file by file
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
        for rel in changes.files:
            if rel.startswith(folder + "/"):
                _replace(source / rel, target / rel, staging / "merge")
        shutil.rmtree(staging, ignore_errors=True)


def _replace(source: Path, final: Path, staging: Path) -> None:
    if _same_file(source, final):
        return  # applied already (another process sharing this working copy committed it)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.is_dir() and not final.is_symlink():
        shutil.rmtree(final)
    os.link(source, staging, follow_symlinks=False)
    os.replace(staging, final)


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except FileNotFoundError:
        return False
    return (sa.st_ino, sa.st_dev) == (sb.st_ino, sb.st_dev)


def _remove(path: Path, trash: Path) -> None:
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return
    if trash.is_dir() and not trash.is_symlink():
        shutil.rmtree(trash, ignore_errors=True)
    else:
        trash.unlink()


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (renames, links) durable; a missing folder has none."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some filesystems (FUSE mounts among them) cannot fsync a folder.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def copy_as_new_file(source: str, target: str) -> None:
    """Copy to a new file and rename it over the old one: a file on the volume is never
    rewritten in place (a working copy shares unchanged files with the committed state)."""
    tmp = f"{target}.tmp-{os.getpid()}"
    shutil.copy2(source, tmp)
    os.replace(tmp, target)
