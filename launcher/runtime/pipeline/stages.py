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
    ctx.inputs           prepare only: its declared input files and folders (`inputs:`), as
                         paths in the repository (in the image, where the code is)
    ctx.recipe           evaluate only: train.recipe built afresh, placed through Accelerate,
                         with the newest complete checkpoint loaded
    ctx.accelerator      evaluate only: the Accelerator it was placed with
    ctx.checkpoint_step  evaluate only: the step of that checkpoint

It returns metrics: a mapping of names to finite numbers. Anything else is a protocol
violation, which no retry fixes (a permanent failure).

prepare's output is published whole or not at all. Its `data_dir` is a new, empty folder
beside the job's data folder; when the function returns, that folder replaces the data
folder, then its result and marker are written, and the volume is committed. Before the
function runs, the old marker is removed (and committed): an attempt that fails after writing
files, even one whose volume is committed on failure as Modal commits it, leaves the data
folder as it was and no marker, so the next run runs prepare again instead of trusting data
it never finished.

Each finished stage leaves `<job folder>/stages/<stage>/result.json` (its metrics, the digest
of its inputs, and for prepare the digest of the data it published) and then a completion
marker, `DONE`, committed. prepare's inputs are what changes its output: its function and
config, the seed, the code version and the contents of its declared input files; never its
retries, compute, timeout or snapshot. A rerun skips a finished `prepare` whose input digest
is unchanged. Train's checkpoints record the digest of the data they were trained on, and a
checkpoint made on other data is refused, whatever order prepare ran in. Standard library
only: the local supervisor and the Modal driver read results without torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher import __version__
from launcher.runtime import settings
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
    inputs: tuple[Path, ...] = ()


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

    @property
    def staging(self) -> Path:
        """Where prepare writes its data before it is published as `data`."""
        return self.stage("prepare") / ".data-next"

    @property
    def retired(self) -> Path:
        """Where the data prepare replaces waits while it is replaced."""
        return self.stage("prepare") / ".data-old"


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


def repo_root() -> Path:
    """Where a stage's declared inputs are read: LAUNCH_REPO_ROOT (locally, the repository the
    spec is in), else the working directory (in the image, where the code is)."""
    return settings.current().repo_root or Path(os.getcwd())


def tree_digest(path: Path) -> str | None:
    """The digest of a file, or of every file under a folder (names and contents); None when
    there is nothing at `path`."""
    if path.is_file():
        files = [(".", path)]
    elif path.is_dir():
        files = sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file())
    else:
        return None
    whole = hashlib.sha256()
    for name, file in files:
        with open(file, "rb") as data:
            whole.update(f"{name}\0{hashlib.file_digest(data, 'sha256').hexdigest()}\n".encode())
    return whole.hexdigest()


def input_paths(spec: JobSpec, stage: str, root: Path | None = None) -> tuple[Path, ...]:
    found = spec.stage(stage)
    return tuple((root or repo_root()) / item for item in (found.inputs if found else ()))


def missing_inputs(spec: JobSpec, stage: str) -> PermanentError | None:
    """A declared input that is not where the code is (no retry brings it), else None."""
    missing = [str(p) for p in input_paths(spec, stage) if not p.exists()]
    if not missing:
        return None
    return PermanentError(f"stages.{stage}.inputs: {', '.join(missing)} not found; inputs are "
                          "files of the repository, which the image must hold (not ignored by git)")


def inputs(spec: JobSpec, stage: str, commit: str | None, root: Path | None = None) -> dict[str, Any]:
    """What a stage's output depends on: train's section; for prepare and evaluate, their
    function, config and declared input files, under `root` (see input_paths) (not retries,
    compute, timeouts: they change how it runs, not what it makes); the seed and the code
    version for all."""
    found = spec.stage(stage)
    if found is None:
        what: dict[str, Any] = {"section": section(spec, stage)}
    else:
        files = {item: tree_digest(path) for item, path in zip(found.inputs, input_paths(spec, stage, root))}
        what = {"run": found.run, "config": json.loads(json.dumps(found.config)), "files": files}
    return {"stage": stage, **what, "seed": spec.train.seed, "code": code_version(spec, stage, commit)}


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


def begin_prepare(folders: StageFolders) -> Path:
    """Before prepare runs: the old marker gone (its data no longer stands as finished once a
    rerun starts) and an empty staging folder for the new data. Commit after this."""
    folders.marker("prepare").unlink(missing_ok=True)
    for leftover in (folders.staging, folders.retired):  # a failed attempt's, committed
        shutil.rmtree(leftover, ignore_errors=True)
    folders.staging.mkdir(parents=True)
    return folders.staging


def publish_prepare(folders: StageFolders, result: Mapping[str, Any]) -> dict[str, Any]:
    """The staged data becomes the data folder, then the result and marker are written: until
    the marker is, nothing says prepare finished. Returns the result with its data digest."""
    published = {**result, "data_digest": tree_digest(folders.staging)}
    folders.marker("prepare").unlink(missing_ok=True)
    shutil.rmtree(folders.retired, ignore_errors=True)
    if folders.data.exists():
        os.rename(folders.data, folders.retired)
    os.rename(folders.staging, folders.data)
    write_result(folders, "prepare", published)
    shutil.rmtree(folders.retired, ignore_errors=True)
    return published


def earlier_train_result(folders: StageFolders, trained: Mapping[str, Any]) -> dict[str, Any] | None:
    """train's finished result from before, when this call trained nothing (it resumed at its
    last step): that result describes the checkpoint evaluate reads; `metrics: {}` would not."""
    resumed, steps = trained.get("resumed_from"), trained.get("steps")
    if resumed is None or resumed != steps:
        return None
    earlier = read_result(folders, "train")
    return earlier if earlier is not None and earlier.get("steps") == steps else None


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
            f"now {(now or 'missing')[:12]}; run again with --fresh to set the job's checkpoints "
            "aside and train on the new data from step 0 (on Modal, which has no --fresh yet: "
            "another checkpoint.volume)")


def data_digest(folders: StageFolders) -> str | None:
    """The digest of the data the finished prepare published (its files' contents), if any."""
    result = read_result(folders, "prepare")
    return None if result is None else result.get("data_digest")
