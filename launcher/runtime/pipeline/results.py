"""What a stage and a pipeline end with, as types: `StageName`, `Status`, `StageResult`,
`PipelineResult`.

Results cross process and machine boundaries as JSON objects (a Modal call's return value, the
driver's record `<job>/driver.json`, a stage's `result.json`, the `@@launch` result event), and
those stay as they were: `from_json` reads one into a typed view, `to_json` gives back the very
object, every key it had kept in its place (byte for byte once dumped), with the typed fields
written over it. So the driver, the local pipeline and `launch`'s report decide on fields, not
on string keys, and an older or newer writer's extra keys survive the trip.

Standard library only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast, get_args

from launcher.spec.model import StageName

STAGE_NAMES: tuple[StageName, ...] = get_args(StageName)


class Status(StrEnum):
    """How a stage (or the pipeline) ended. A StrEnum: it is its JSON string, and compares equal
    to it."""

    FINISHED = "finished"
    SKIPPED = "skipped"  # prepare, unchanged since it finished
    FAILED = "failed"  # its retries spent, or a stage before it did not finish (the pipeline)
    PERMANENT = "permanent"  # no retry fixes it (a bug in launcher too: `bug`)
    INTERRUPTED = "interrupted"  # a signal stopped the local run
    PREEMPTED = "preempted"
    STOPPED = "stopped"  # `launch stop`: a final checkpoint, no retry, no later stage

    @property
    def done(self) -> bool:
        """Whether the pipeline goes on after a stage that ended so."""
        return self in (Status.FINISHED, Status.SKIPPED)


def _status(value: Any) -> Status:
    """A status read from JSON; an unknown or missing one is a failure."""
    try:
        return Status(value)
    except ValueError:
        return Status.FAILED


def _merged(raw: Mapping[str, Any], typed: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """`raw` with the typed fields written over it: a key it had keeps its place; a field it
    lacked is added only when it is not its default."""
    out = dict(raw)
    for key, value in typed.items():
        if key in out or value != defaults[key]:
            out[key] = value
    return out


@dataclass(frozen=True)
class StageResult:
    """One stage's result. `raw`: the JSON object it was read from (see the module's docstring)."""

    stage: StageName | None
    status: Status
    error: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    bug: bool = False  # a bug in launcher: `launch` exits 3
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], stage: StageName | None = None) -> StageResult:
        """`data` as a stage's result; `stage` names it where `data` does not."""
        named = data.get("stage", stage)
        metrics = data.get("metrics")
        return cls(stage=cast(StageName, named) if named in STAGE_NAMES else stage,
                   status=_status(data.get("status")), error=data.get("error"),
                   metrics=metrics if isinstance(metrics, Mapping) else {},
                   bug=bool(data.get("bug")), raw=dict(data))

    def to_json(self) -> dict[str, Any]:
        typed = {"stage": self.stage, "status": str(self.status), "error": self.error,
                 "metrics": dict(self.metrics), "bug": self.bug}
        return _merged(self.raw, typed, {"stage": None, "status": None, "error": None,
                                         "metrics": {}, "bug": False})

    def but(self, **changes: Any) -> StageResult:
        """This result with `changes` (fields, or other JSON keys kept in `raw`)."""
        fields = {f.name for f in dataclasses.fields(self)}
        typed = {k: v for k, v in changes.items() if k in fields}
        extra = {k: v for k, v in changes.items() if k not in fields}
        return dataclasses.replace(self, **typed, raw={**self.raw, **extra})


@dataclass(frozen=True)
class PipelineResult:
    """The driver's result: each stage's result in order, the pipeline's status, the stage that
    stopped it; `error` when it was refused before any stage ran (another run holds the job) or
    the driver itself failed (`bug`)."""

    status: Status
    stages: tuple[StageResult, ...] = ()
    failed_stage: StageName | None = None
    error: str | None = None
    bug: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PipelineResult:
        failed = data.get("failed_stage")
        return cls(status=_status(data.get("status")),
                   stages=tuple(StageResult.from_json(s) for s in data.get("stages") or ()),
                   failed_stage=cast(StageName, failed) if failed in STAGE_NAMES else None,
                   error=data.get("error"), bug=bool(data.get("bug")))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": str(self.status)}
        if self.error is not None:
            out["error"] = self.error
        if self.bug:
            out["bug"] = True
        out.update(failed_stage=self.failed_stage, stages=[s.to_json() for s in self.stages])
        return out

    def stage(self, name: str) -> StageResult | None:
        return next((s for s in self.stages if s.stage == name), None)

    @property
    def has_bug(self) -> bool:
        """Whether a bug in launcher stopped it: the driver's own, or a stage's."""
        return self.bug or any(s.bug for s in self.stages)
