"""`launch pull RUN|SPEC.yaml [--step N | --best | --latest] DEST`: a checkpoint's files, copied
from the local volume or downloaded from the Modal volume, each checked against the size and
sha256 its manifest records. DEST is written whole or not at all (a temporary folder renamed)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import click

from launcher.errors import RunError
from launcher.registry import Where, find
from launcher.runtime.runs import lookup

MANIFEST = "manifest.json"


def step_dir(step: int) -> str:
    return f"step-{step:08d}"  # as launcher.runtime.checkpoint.store names them


def _steps(source: lookup.Source, job: str) -> list[int]:
    return sorted((int(n[5:]) for n in source.listdir(job)
                   if n.startswith("step-") and n[5:].isdigit()), reverse=True)


def _target(target: str, where: Where) -> tuple[lookup.Source, str, Any]:
    """(volume, job, the run's record or None) for a run id or a spec file."""
    if target.endswith((".yaml", ".yml")) or Path(target).is_file():
        from launcher.registry import sources

        source, jobs = sources([target], where)[0]
        assert jobs is not None
        return source, jobs[0], None
    seen = find(target, where)
    return seen.found.source, seen.record.job, seen.record


def _choose(source: lookup.Source, job: str, record: Any, step: int | None, best: bool) -> int:
    kept = _steps(source, job)
    what = f"run {record.run}" if record is not None else f"job {job}"
    if best:
        best_ckpt = (record.checkpoints.get("best") if record is not None else _best_of_runs(source, job))
        if not best_ckpt:
            raise RunError(f"{what}: no best checkpoint recorded (the recipe names no objective, "
                           "or none was measured at a checkpoint); --latest or --step N")
        step = best_ckpt["step"]
    elif step is None:
        if record is not None and record.newest_step is not None:
            step = record.newest_step
        elif kept:
            step = kept[0]
        else:
            raise RunError(f"{what}: no checkpoint on volume {source.name}")
    if step not in kept:
        shown = ", ".join(map(str, kept[:8])) or "none"
        raise RunError(f"{what}: checkpoint {step} is not on volume {source.name} "
                       f"(retention removed it, or it was never written); kept: {shown}")
    return step


def _best_of_runs(source: lookup.Source, job: str) -> dict[str, Any] | None:
    for found in lookup.list_runs(source, [job]):
        best = found.record.checkpoints.get("best")
        if best:
            return best
    return None


def _read_manifest(source: lookup.Source, folder: str) -> dict[str, Any]:
    try:
        manifest = json.loads(source.read(f"{folder}/{MANIFEST}"))
        files = manifest["files"]
        assert isinstance(files, dict)
        return manifest
    except (OSError, ValueError, KeyError, AssertionError) as exc:
        raise RunError(f"{source.name}:{folder}/{MANIFEST}: not a readable checkpoint manifest "
                       f"({type(exc).__name__})") from None


def _copy(source: lookup.Source, path: str, dest: Path) -> str:
    """Write the file at `path` to `dest`; its sha256."""
    digest = hashlib.sha256()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        for chunk in _chunks(source, path):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _chunks(source: lookup.Source, path: str) -> Any:
    stream = getattr(source, "stream", None)
    if stream is not None:
        return stream(path)
    return [source.read(path)]


def pull(target: str, dest: Path, step: int | None, best: bool, where: Where) -> int:
    source, job, record = _target(target, where)
    chosen = _choose(source, job, record, step, best)
    folder = f"{job}/{step_dir(chosen)}"
    manifest = _read_manifest(source, folder)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise RunError(f"{dest}: exists and is not an empty folder; pull into a new one")
    tmp = dest.with_name(f".{dest.name}.pulling-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for rel, want in sorted(manifest["files"].items()):
            got = _copy(source, f"{folder}/{rel}", tmp / rel)
            size = (tmp / rel).stat().st_size
            if got != want["sha256"] or size != want["size"]:
                raise RunError(f"{source.name}:{folder}/{rel}: does not match its manifest "
                               f"({size} bytes, sha256 {got[:12]}; the manifest says "
                               f"{want['size']} bytes, {want['sha256'][:12]}); nothing was kept")
        (tmp / MANIFEST).write_bytes(source.read(f"{folder}/{MANIFEST}"))
        if dest.is_dir():
            dest.rmdir()
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp, dest)
    except OSError as exc:
        raise RunError(f"{exc.filename or dest}: cannot write the checkpoint: {exc.strerror}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    click.echo(f"checkpoint {chosen} of {job} ({len(manifest['files'])} files, verified) -> {dest}",
               err=True)
    return 0
