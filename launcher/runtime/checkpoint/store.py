"""Checkpoint store on a directory: the mounted Modal Volume, or a local one.

Each checkpoint is ``<root>/step-00000100/`` (the state after 100 updates; ``root`` is the
job's own folder on the volume) with a ``manifest.json`` (step, spec hash,
every file's size and sha256, versions, caller's ``extra``). It is written under
``.tmp-step-00000100-<random>``, fsynced, then renamed into place, so a final-named
directory with a valid manifest is always complete. Deletion renames to ``.trash-...``
first, so a kill mid-delete never leaves a half-deleted directory that looks complete.
Retention keeps the newest ``keep_last`` and, with ``keep_best``, the best by the objective
value each manifest records (``extra.objective``: name, mode, value); it never deletes one of
those. ``set_aside`` moves checkpoints that a run starting from an earlier step would overwrite into
``<root>/set-aside/<time>-<random>/``, where nothing looks for checkpoints.

Stdlib only: the store does not care what writes the files (in practice
``accelerator.save_state``). One writer per root: the job's lease (lease.py) makes sure of
it, and ``clean_temp``, which removes any temporary directory it finds, runs only under it.
``volume.commit()`` after ``save`` is the caller's job.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher.runtime.storage import disk, tree
from launcher.runtime.storage.disk import StorageError

MANIFEST = "manifest.json"
SET_ASIDE = "set-aside"  # under a job's folder: checkpoints a later run would have overwritten
FORMAT = 1
_STEP_DIR = re.compile(r"step-(\d{8,})")
_LEFTOVER_PREFIXES = (".tmp-", ".trash-")
_CHUNK = 1 << 20


class CheckpointError(Exception):
    """A checkpoint could not be written, read or verified."""


class StorageRefused(CheckpointError, StorageError):
    """A checkpoint the storage refused (full, read-only): permanent, said path first."""


class Incompatible(Exception):
    """A checkpoint that loads but must not be resumed (e.g. the model's config changed).

    `newest_usable` lets it through instead of falling back: an older checkpoint of the
    same run would be just as incompatible, and silently training from it would be wrong.
    """


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    manifest: dict[str, Any]


def step_name(step: int) -> str:
    return f"step-{step:08d}"


def save(
    root: str | os.PathLike[str],
    step: int,
    writer: Callable[[Path], object],
    *,
    spec_hash: str,
    extra: dict[str, Any] | None = None,
    keep_last: int | None = None,
    keep_best: int = 0,
) -> Checkpoint:
    """Write a checkpoint via ``writer(tmp_dir)``, publish it atomically, apply retention."""
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last must be at least 1, got {keep_last}")
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{step_name(step)}-", dir=root))
    except OSError as exc:
        raise _failed(step, exc, root, root) from exc
    try:
        manifest = _write(tmp, step, writer, spec_hash, extra or {})
        _publish(tmp, root / step_name(step))
    except BaseException as exc:
        # Asked before the partial files go: a full disk is full only while they are there.
        failed = _failed(step, exc, root, tmp) if isinstance(exc, Exception) else None
        shutil.rmtree(tmp, ignore_errors=True)
        if failed is None:
            raise
        raise failed from exc
    if keep_last is not None:
        _retain(root, step, keep_last, keep_best)
    return Checkpoint(root / step_name(step), step, manifest)


def complete(root: str | os.PathLike[str]) -> list[Checkpoint]:
    """The complete checkpoints under ``root``, newest first."""
    found = []
    for step, path in _step_dirs(Path(root)):
        try:
            found.append(Checkpoint(path, step, read_manifest(path, step)))
        except CheckpointError:
            continue
    return found


def verify(ckpt: Checkpoint) -> None:
    """Check every file in the manifest for presence, size and sha256; extra files are fine."""
    for rel, expected in ckpt.manifest["files"].items():
        path = ckpt.path / rel
        if not path.is_file():
            raise CheckpointError(f"{rel} is missing")
        size = path.stat().st_size
        if size != expected["size"]:
            raise CheckpointError(f"{rel} has {size} bytes, the manifest says {expected['size']}")
        if _sha256(path) != expected["sha256"]:
            raise CheckpointError(f"{rel} does not match its sha256 in the manifest")


def newest_usable(
    root: str | os.PathLike[str],
    check: Callable[[Checkpoint], object],
    warn: Callable[[str], object],
    skip: Collection[int] = (),
    best: bool = False,
) -> Checkpoint | None:
    """The newest checkpoint that verifies and passes ``check``, newest first; each that fails
    is skipped with a warning. Neither step changes anything: loading is the caller's.
    ``best``: the best by the objective value the manifests record first (see `by_objective`),
    then those that record none, newest first.

    ``check`` raising `Incompatible` stops the search (an older checkpoint of the same run
    would be just as incompatible). Steps in ``skip`` (loaded before and failed) are passed over.
    """
    candidates = [(s, p) for s, p in _step_dirs(Path(root)) if s not in skip]
    if best:
        ranked = by_objective(complete(root))
        first = [(c.step, c.path) for c in ranked if c.step not in skip]
        candidates = first + [c for c in candidates if c not in first]
    for i, (step, path) in enumerate(candidates):
        try:
            ckpt = Checkpoint(path, step, read_manifest(path, step))
            verify(ckpt)
            check(ckpt)
            return ckpt
        except Incompatible:
            raise
        except Exception as exc:
            warn(f"checkpoint {path.name} skipped: {_reason(exc)}; {_then(i + 1 < len(candidates))}")
    return None


def set_aside(root: str | os.PathLike[str], after: int) -> tuple[Path, list[str]] | None:
    """Move every checkpoint folder of a step after ``after`` (complete or not) into a new
    ``<root>/set-aside/<time>-<random>/``: a run that starts from ``after`` writes those steps
    again, and must neither overwrite nor delete what it did not write. The folder and the
    names moved, or None when there were none."""
    root = Path(root)
    newer = sorted(p for s, p in _step_dirs(root) if s > after)
    if not newer:
        return None
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    target = root / SET_ASIDE / f"{stamp}-{secrets.token_hex(3)}"
    try:
        target.mkdir(parents=True)
        for path in newer:
            os.rename(path, target / path.name)
        tree.fsync_dir(target)
        tree.fsync_dir(root)
    except OSError as exc:
        raise CheckpointError(f"cannot set aside {root}/step-* newer than update {after} in "
                              f"{target}: {_reason(exc)}; nothing was overwritten") from exc
    return target, [p.name for p in newer]


def _then(earlier: bool) -> str:
    return "falling back to the previous one" if earlier else "no earlier checkpoint to fall back to"


def earlier_than(root: str | os.PathLike[str], step: int, skip: Collection[int] = ()) -> bool:
    """Whether a checkpoint older than ``step`` (and not in ``skip``) is there to fall back to."""
    return any(s < step and s not in skip for s, _ in _step_dirs(Path(root)))


def top_level(volume_root: str | os.PathLike[str]) -> list[str]:
    """Checkpoints at the volume's top level, as launcher wrote them before job folders."""
    return sorted(p.name for _, p in _step_dirs(Path(volume_root)))


def clean_temp(root: str | os.PathLike[str]) -> list[str]:
    """Remove temporary and trash directories left by killed attempts; return their names.

    Only for a folder whose writer holds the job's lease: another live run's temporary
    directories look just the same."""
    root = Path(root)
    if not root.is_dir():
        return []
    removed = sorted(p.name for p in root.iterdir() if p.name.startswith(_LEFTOVER_PREFIXES))
    for name in removed:
        # A link is removed, never followed: what it points to is not the job's.
        if (root / name).is_dir() and not (root / name).is_symlink():
            shutil.rmtree(root / name, ignore_errors=True)
        else:
            (root / name).unlink(missing_ok=True)  # a file written to be renamed into place
    return removed


def _write(
    tmp: Path, step: int, writer: Callable[[Path], object], spec_hash: str, extra: dict[str, Any]
) -> dict[str, Any]:
    writer(tmp)
    manifest = {
        "format": FORMAT,
        "step": step,
        "spec_hash": spec_hash,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "files": _hash_tree(tmp),
        "versions": _versions(),
        "extra": extra,
    }
    # Written last and with "x": its presence means every file above is in place.
    with open(tmp / MANIFEST, "x", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    for dirpath, _, _ in os.walk(tmp):
        tree.fsync_dir(Path(dirpath))
    return manifest


def _hash_tree(top: Path) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file under ``top``, fsyncing each on the way."""
    files = {}
    for dirpath, _, names in os.walk(top):
        for name in names:
            path = Path(dirpath, name)
            files[path.relative_to(top).as_posix()] = {
                "size": path.stat().st_size,
                "sha256": _sha256(path, fsync=True),
            }
    return dict(sorted(files.items()))


def _sha256(path: Path, *, fsync: bool = False) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
        if fsync:
            os.fsync(f.fileno())
    return digest.hexdigest()


def _publish(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an existing ``final`` is moved aside first, then deleted."""
    old = _trash_name(final) if final.exists() else None
    if old is not None:
        os.rename(final, old)
    try:
        os.rename(tmp, final)
    except OSError:
        if old is not None:
            os.rename(old, final)
        raise
    tree.fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def retain(root: str | os.PathLike[str], step: int, keep_last: int, keep_best: int = 0) -> None:
    """Apply ``keep_last`` and ``keep_best`` on their own, e.g. once the new checkpoint is
    committed."""
    _retain(Path(root), step, keep_last, keep_best)


def objective_value(ckpt: Checkpoint) -> tuple[float, str] | None:
    """The objective value and mode (min | max) the checkpoint's manifest records, or None."""
    recorded = ckpt.manifest.get("extra", {}).get("objective")
    if not isinstance(recorded, dict):
        return None
    value, mode = recorded.get("value"), recorded.get("mode")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or mode not in ("min", "max"):
        return None
    return float(value), mode


def by_objective(checkpoints: list[Checkpoint]) -> list[Checkpoint]:
    """The checkpoints that record an objective value, best first (ties: the newer first); the
    mode is the newest one's (a recipe changed since is ranked by what it says now)."""
    valued = [(c, found) for c in checkpoints if (found := objective_value(c)) is not None]
    if not valued:
        return []
    mode = max(valued, key=lambda item: item[0].step)[1][1]
    sign = 1.0 if mode == "min" else -1.0
    return [c for c, (value, _) in sorted(valued, key=lambda item: (sign * item[1][0], -item[0].step))
            if value == value]  # a NaN is never best


def _retain(root: Path, step: int, keep_last: int, keep_best: int = 0) -> None:
    """Keep the newest ``keep_last`` checkpoints up to ``step`` and the best ``keep_best`` of
    them by objective; newer ones are left alone."""
    older = [c for c in complete(root) if c.step <= step]
    kept = {c.step for c in older[:keep_last]} | {c.step for c in by_objective(older)[:keep_best]}
    for ckpt in (c for c in older if c.step not in kept):
        try:
            _discard(ckpt.path)
        except OSError as exc:
            raise CheckpointError(
                f"checkpoint after update {step} written, but removing {ckpt.path.name} failed: "
                f"{_reason(exc)}"
            ) from exc


def _discard(path: Path) -> None:
    trash = _trash_name(path)
    os.rename(path, trash)
    tree.fsync_dir(path.parent)
    shutil.rmtree(trash, ignore_errors=True)


def _trash_name(path: Path) -> Path:
    return path.with_name(f".trash-{path.name}-{secrets.token_hex(4)}")


def _step_dirs(root: Path) -> list[tuple[int, Path]]:
    """Final-named checkpoint directories, newest first, whether complete or not."""
    if not root.is_dir():
        return []
    found = [(int(m[1]), p) for p in root.iterdir() if (m := _STEP_DIR.fullmatch(p.name))]
    # A link is never a checkpoint: it may point out of the volume, and is never loaded or deleted.
    return sorted((s, p) for s, p in found if p.is_dir() and not p.is_symlink())[::-1]


def read_manifest(path: Path, step: int) -> dict[str, Any]:
    """The manifest of the checkpoint at ``path``; CheckpointError if it is missing or malformed."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{MANIFEST} is missing") from None
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise CheckpointError(f"{MANIFEST} is unreadable: {_reason(exc)}") from exc
    if not _well_formed(manifest, step):
        raise CheckpointError(f"{MANIFEST} is not a format-{FORMAT} manifest for step {step}")
    return manifest


def _well_formed(manifest: Any, step: int) -> bool:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return False
    files = manifest.get("files")
    return manifest.get("step") == step and isinstance(manifest.get("extra", {}), dict) \
        and isinstance(files, dict) and all(
        isinstance(f, dict) and isinstance(f.get("size"), int) and isinstance(f.get("sha256"), str)
        for f in files.values()
    )


def _versions() -> dict[str, str]:
    # Package metadata, not imports: saving must not pay for (or require) importing torch.
    versions = {"python": platform.python_version(), "launcher": "unknown"}
    for dist in ("torch", "accelerate", "launcher"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} (errno {exc.errno})"
    if isinstance(exc, CheckpointError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _failed(step: int, exc: BaseException, root: Path, where: Path) -> CheckpointError:
    """Why the checkpoint was not written to `where` (in `root`): the storage's fault (permanent,
    said with `root` first), or any other."""
    found = disk.error(exc, f"checkpoint after update {step} not written (earlier checkpoints "
                            "are intact)", where, named=root)
    return StorageRefused(str(found)) if found is not None else CheckpointError(_not_written(step, exc))


def _not_written(step: int, exc: BaseException) -> str:
    return f"checkpoint after update {step} not written: {_reason(exc)}; earlier checkpoints are intact"
