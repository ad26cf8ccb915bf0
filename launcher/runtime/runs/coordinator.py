"""The run record on Modal, where the coordinator is a function call: a pipeline's driver, or
for a train-only job the training call itself (it owns the job's lease, and Modal restarts it,
same call id, for each retry and preemption: one writer at a time).

`launch` makes the run's id and what only the launching machine knows (the spec file's name,
the code's commit and uncommitted diff, the installed versions, the plan's prices) and passes
them to the call as `run` (a dict). Each attempt of the call continues the record it finds on
the volume (after a reload) for that run id: an attempt that never said how it ended is
`lost` (preempted, or its container died).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from launcher.runtime.runs.record import RunRecord, record_path
from launcher.runtime.runs.recorder import Recorder
from launcher.spec.model import JobSpec

DIFF = "code.diff"


def adopt_run_id(run_id: str) -> None:
    """On Modal: this process takes the run's id as a local worker has it (LAUNCH_RUN_ID), so
    whatever reads the runtime's settings names the run's folders alike."""
    from launcher.runtime.settings import ENV

    os.environ[ENV["run_id"]] = run_id


def record_for(job_dir: Path, run: Mapping[str, Any], spec: JobSpec, call_id: str,
               commit: Callable[[], None], say: Callable[[str], None]) -> Recorder:
    """The recorder of run `run["id"]`: the record found on the volume, else a new one."""
    path = record_path(job_dir, str(run["id"]))
    try:
        record = RunRecord.parse(path.read_text("utf-8"))
    except (OSError, ValueError, TypeError, KeyError):
        record = _new(run, spec, call_id)
    recorder = Recorder(job_dir, record, commit=commit, say=say)
    if record.status != "running":  # an earlier attempt wrote an end, then Modal retried it
        recorder.transition("running", note="restarted")
    diff = run.get("diff")
    if diff and not (path.parent / DIFF).exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / DIFF).write_text(str(diff), "utf-8")
    return recorder


def _new(run: Mapping[str, Any], spec: JobSpec, call_id: str) -> RunRecord:
    from launcher.spec.model import gpu_string

    gpu = gpu_string(spec.compute)
    return RunRecord(
        run=str(run["id"]), job=spec.name, volume=spec.checkpoint.volume, backend="modal",
        started=float(run.get("started") or time.time()), stage=spec.pipeline[0],
        stages=list(spec.pipeline), app=spec.name, environment=spec.environment,
        coordinator={"kind": "modal call", "call_id": call_id},
        spec=spec.to_dict(), spec_hash=spec.hash, source=str(run.get("source", "")),
        code=dict(run.get("code") or {}), versions={**dict(run.get("versions") or {}),
                                                    "container_pid": str(os.getpid())},
        gpu="cpu" if gpu is None else gpu if isinstance(gpu, str) else "|".join(gpu),
        prices=dict(run.get("prices") or {}))


def begin_attempt(recorder: Recorder, stage: str, call_id: str) -> int:
    """A new attempt of the call: earlier ones that never ended were lost. Its number."""
    now = time.time()
    for attempt in recorder.record.attempts:
        if attempt.stage == stage and attempt.ended is None:
            attempt.ended, attempt.outcome = now, "lost"
            attempt.message = "ended without a word (preempted, or its container died)"
    number = len(recorder.record.attempts_of(stage)) + 1
    recorder.attempt_started(stage, number, call_id=call_id)
    return number


def newest_checkpoint(job_dir: Path) -> tuple[int, float] | None:
    """The newest complete checkpoint's step and time, from the store's own listing."""
    from launcher.runtime.checkpoint import store

    found = store.complete(job_dir)
    if not found:
        return None
    return found[0].step, found[0].path.stat().st_mtime
