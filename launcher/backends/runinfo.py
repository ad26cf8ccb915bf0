"""What a run records about itself when it starts: the spec, the code, the versions, the prices.

The coordinator (the local supervisor here; on Modal the driver or the training call) keeps the
record up to date from then on (launcher.runtime.runs.recorder).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from pathlib import Path
from typing import Any

from launcher import __version__, gitinfo
from launcher.runtime.runs.liveness import process_start
from launcher.runtime.runs.record import RunRecord, new_run_id
from launcher.spec.model import JobSpec

DIFF = "code.diff"  # beside the record: the uncommitted changes of the code that ran


def versions() -> dict[str, str]:
    """Installed versions, from package metadata: nothing is imported for them."""
    found = {"launcher": __version__, "python": platform.python_version()}
    for dist in ("modal", "torch"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def stage_prices(spec: JobSpec, local: bool) -> dict[str, float | None]:
    """USD per hour for each stage's containers, as the plan prices them; a local run costs
    nothing on Modal."""
    from launcher.cost import stage_costs

    return {name: 0.0 if local else (None if c.price is None else round(c.price * c.gpus, 6))
            for name, c in stage_costs(spec)}


def gpu_label(spec: JobSpec) -> str:
    gpu = spec.gpu_string
    label = "cpu" if gpu is None else gpu if isinstance(gpu, str) else "|".join(gpu)
    return label + (f" x{spec.compute.nodes}" if spec.compute.nodes > 1 else "")


def code_state(repo_root: Path, mode: str, commit: str | None = None) -> tuple[dict[str, Any], str | None]:
    """The code that ran: its commit and whether the working tree differed from it ("local"
    code), with the diff of the uncommitted changes (text, or None) to keep beside the record."""
    if mode == "git":
        return {"mode": "git", "commit": commit, "dirty": False, "diff": None, "untracked": []}, None
    head = gitinfo.git(repo_root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    if head is None:
        return {"mode": "local", "commit": None, "dirty": None, "diff": None, "untracked": []}, None
    dirty = [f for f in gitinfo.dirty_files(repo_root) if not f.startswith(".launch/")]
    diff = gitinfo.git(repo_root, "diff", "--binary", "HEAD", strip=False) if dirty else None
    untracked = gitinfo.git(repo_root, "ls-files", "--others", "--exclude-standard")
    return {"mode": "local", "commit": head, "dirty": bool(dirty), "diff": DIFF if diff else None,
            "untracked": [u for u in (untracked or "").splitlines() if not u.startswith(".launch/")]}, diff


def modal_run(spec: JobSpec, source: str, repo_root: Path, mode: str, commit: str | None) -> dict[str, Any]:
    """What `launch` hands the run's coordinator on Modal (launcher.runtime.runs.coordinator):
    the run's id and what only this machine knows."""
    now = time.time()
    code, diff = code_state(repo_root, mode, commit)
    return {"id": new_run_id(now), "started": now, "source": source, "code": code, "diff": diff,
            "versions": versions(), "prices": stage_prices(spec, local=False)}


def local_record(spec: JobSpec, source: str, repo_root: Path, run_dir: Path) -> tuple[RunRecord, str | None]:
    """A new local run's record (status running) and its code diff; its logs go to a folder
    named by its id in `run_dir` (the job's local run folder)."""
    now = time.time()
    run_id = new_run_id(now)
    code, diff = code_state(repo_root, "local")
    pid = os.getpid()
    record = RunRecord(
        run=run_id, job=spec.name, volume=spec.checkpoint.volume, backend="local",
        started=now, stage=spec.pipeline[0], stages=list(spec.pipeline), app=spec.name,
        environment=spec.environment,
        coordinator={"kind": "local supervisor", "host": platform.node(), "pid": pid,
                     "pid_start": process_start(pid)},
        spec=spec.to_dict(), spec_hash=spec.hash, source=source, code=code, versions=versions(),
        gpu=gpu_label(spec), prices=stage_prices(spec, local=True), logs=str(run_dir / run_id))
    return record, diff
