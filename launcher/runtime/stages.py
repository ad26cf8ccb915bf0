"""The stage protocol, and what a finished stage leaves on the volume.

A spec's `stages:` names functions as `module:function`: `prepare` runs before train,
`evaluate` after it. Each is called once per attempt, in its own container (locally, its own
worker process), as `function(ctx) -> dict[str, float]` with a `StageContext`:

    ctx.stage            "prepare" or "evaluate"
    ctx.config           the stage's `config:` from the spec (validated by its schema file)
    ctx.seed             train.seed: seed everything random from it
    ctx.data_dir         the job's data folder on the volume: prepare writes it, train's
                         recipe (as `recipe.data_dir`, in setup()) and evaluate read it
    ctx.log(text)        a log line, in the job's log locally and on Modal
    ctx.recipe           evaluate only: train.recipe built afresh, placed through Accelerate,
                         with the newest complete checkpoint loaded
    ctx.accelerator      evaluate only: the Accelerator it was placed with
    ctx.checkpoint_step  evaluate only: the step of that checkpoint

It returns metrics: a mapping of names to finite numbers. Anything else is a protocol
violation, which no retry fixes (a permanent failure). Write files into `data_dir` under a
temporary name and rename them into place: the runtime commits the volume after the function
returns, together with the stage's result, so a killed attempt leaves no half-written data
that looks finished.

Each finished stage leaves `<job folder>/stages/<stage>/result.json` (its metrics and the
digest of its inputs: its resolved spec section, the seed and the code version) and then a
completion marker, `DONE`, committed. A rerun skips a finished `prepare` whose digest is
unchanged. Standard library only: the local supervisor and the Modal driver read results
without torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher import __version__
from launcher.runtime.failures import PermanentError
from launcher.spec.model import JobSpec
from launcher.spec.refs import RefError, module_file

RESULT = "result.json"
MARKER = "DONE"


@dataclass(frozen=True)
class StageContext:
    stage: str
    config: Mapping[str, Any]
    seed: int
    data_dir: Path
    log: Callable[[str], None]
    recipe: Any = None
    accelerator: Any = None
    checkpoint_step: int | None = None


class StageFolders:
    """Where a job's pipeline keeps its files, inside the job's folder on the volume."""

    def __init__(self, root: Path, job: str) -> None:
        self.job = root / job

    @property
    def data(self) -> Path:
        return self.job / "data"

    def stage(self, name: str) -> Path:
        return self.job / "stages" / name

    def result(self, name: str) -> Path:
        return self.stage(name) / RESULT

    def marker(self, name: str) -> Path:
        return self.stage(name) / MARKER


def code_version(spec: JobSpec, stage: str, commit: str | None) -> str:
    """The pinned git commit (`image.code: git`), else a digest of the stage's module source
    and launcher's version: what the stage's code is, wherever it runs."""
    if commit:
        return f"git:{commit}"
    ref = spec.train.recipe if stage == "train" else spec.stage(stage).run  # type: ignore[union-attr]
    try:
        origin = module_file(ref.partition(":")[0])
    except RefError:
        origin = None
    source = origin.read_bytes() if origin is not None else b""
    return f"source:{hashlib.sha256(source).hexdigest()}+launcher:{__version__}"


def section(spec: JobSpec, stage: str) -> dict[str, Any]:
    """The stage's resolved spec section, as plain data (train: the train section)."""
    found = spec.train if stage == "train" else spec.stage(stage)
    return json.loads(json.dumps(dataclasses.asdict(found)))  # type: ignore[arg-type]


def inputs(spec: JobSpec, stage: str, commit: str | None) -> dict[str, Any]:
    return {"stage": stage, "section": section(spec, stage), "seed": spec.train.seed,
            "code": code_version(spec, stage, commit)}


def digest(stage_inputs: Mapping[str, Any]) -> str:
    canonical = json.dumps(stage_inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def metrics_of(stage: str, value: Any) -> dict[str, float]:
    """A stage function's return value as metrics, or a permanent failure saying what is wrong."""
    if not isinstance(value, Mapping):
        raise PermanentError(f"stages.{stage}: the function returned {type(value).__name__}, "
                             "not a mapping of metric names to numbers")
    metrics = {}
    for key, number in value.items():
        if not isinstance(key, str) or isinstance(number, bool) \
                or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise PermanentError(f"stages.{stage}: metric {key!r} is {number!r}; a stage function "
                                 "returns finite numbers only")
        metrics[key] = number
    return metrics


def describe(metrics: Mapping[str, float]) -> str:
    """`name value, ...` for a log or summary line."""
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in metrics.items()) or "no metrics"


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write under a temporary name, fsync, rename: never a half-written file under `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def write_result(folders: StageFolders, name: str, result: Mapping[str, Any]) -> None:
    """The result first, then the marker: a marker always stands for a complete result."""
    folders.marker(name).unlink(missing_ok=True)
    _write_json(folders.result(name), result)
    _write_json(folders.marker(name), {"digest": result["digest"]})


def read_result(folders: StageFolders, name: str) -> dict[str, Any] | None:
    """The finished stage's result, or None (never finished, or its files are damaged)."""
    try:
        marker = json.loads(folders.marker(name).read_text())
        result = json.loads(folders.result(name).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict) or marker.get("digest") != result.get("digest"):
        return None
    return result


def stale_data(step: int, saved: str | None, now: str | None) -> str:
    """Why train refuses a checkpoint made on other data than prepare's current data."""
    made = f"data from prepare {saved[:12]}" if saved else "no prepared data"
    return (f"cannot resume from step-{step:08d}: it was trained on {made}, and prepare's data is "
            f"now {(now or 'missing')[:12]}; start train afresh (--fresh locally moves the job's "
            "checkpoints aside; on Modal, checkpoint.resume: never or another checkpoint.volume)")


def data_digest(folders: StageFolders) -> str | None:
    """The digest of the finished prepare whose data is in the data folder, if any."""
    result = read_result(folders, "prepare")
    return None if result is None else result.get("digest")
