"""The validated job spec as frozen, typed dataclasses.

Standard library only: the runtime rebuilds a `JobSpec` inside the container from the literal
that the generated app embeds, and must not pull in jsonschema or YAML to do it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

StageName = Literal["prepare", "train", "evaluate"]  # the stages of a pipeline, in order
CodeMode = Literal["git", "local"]  # image.code
ResumeMode = Literal["auto", "never"]  # checkpoint.resume
AsyncWrite = Literal["auto", True, False]  # checkpoint.async
CheckpointPick = Literal["latest", "best"]  # stages.evaluate.checkpoint


@dataclass(frozen=True)
class Compute:
    gpu: tuple[str, ...]  # ranked fallbacks; empty means CPU only
    gpu_count: int
    nodes: int
    rdma: bool
    cpu: float
    memory_mib: int
    timeout_s: int
    region: tuple[str, ...]
    cloud: str | None


@dataclass(frozen=True)
class GitSource:
    url: str | None
    ref: str | None


@dataclass(frozen=True)
class Image:
    dockerfile: str
    code: CodeMode
    git: GitSource


@dataclass(frozen=True)
class Retries:
    max_retries: int
    initial_delay_s: int
    backoff_coefficient: float
    max_delay_s: int

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based), as Modal computes it."""
        raw = self.initial_delay_s * self.backoff_coefficient ** (retry - 1)
        return float(min(raw, self.max_delay_s))


@dataclass(frozen=True)
class KeepWarm:
    min_containers: int
    max_containers: int | None
    buffer_containers: int
    scaledown_window_s: int


@dataclass(frozen=True)
class Checkpoint:
    volume: str
    mount: str
    every_steps: int | None
    every_s: int | None
    keep_last: int
    resume: ResumeMode
    async_write: AsyncWrite  # checkpoint.async
    keep_best: int = 0  # the best by the recipe's objective, kept besides keep_last

    def writes_in_background(self, processes: int) -> bool:
        """Whether a run with `processes` training processes writes checkpoints in the
        background: with one process, unless asked not to (more need every rank in a save)."""
        return self.async_write is not False and processes == 1


@dataclass(frozen=True)
class Train:
    recipe: str
    steps: int
    seed: int
    mixed_precision: str
    gradient_accumulation_steps: int
    log_every: int
    tracker: str
    config: dict[str, Any] = field(hash=False)
    validate_every: int | None = None  # recipe.validate() every this many updates (and at the end)


@dataclass(frozen=True)
class Stage:
    """A pipeline stage around train: `prepare` before it, `evaluate` after it."""

    name: StageName  # prepare | evaluate
    run: str  # module:function
    compute: Compute  # the job's, overridden field by field; one node
    retries: Retries  # the job's delays, the stage's own max_retries
    snapshot: str  # none | cpu | gpu
    config: dict[str, Any] = field(hash=False)
    inputs: tuple[str, ...] = ()  # files it reads, relative to the repository root
    checkpoint: CheckpointPick = "latest"  # evaluate: which of train's checkpoints it loads

    @property
    def gpu_string(self) -> list[str] | str | None:
        return gpu_string(self.compute)


def gpu_string(compute: Compute) -> list[str] | str | None:
    """The `gpu=` argument Modal takes: 'H100:8', or a ranked list of such strings."""
    if not compute.gpu:
        return None
    options = [f"{gpu}:{compute.gpu_count}" if compute.gpu_count > 1 else gpu for gpu in compute.gpu]
    return options[0] if len(options) == 1 else options


@dataclass(frozen=True)
class Notify:
    """The webhook a run's coordinator calls (launcher.runtime.notify)."""

    url: str | None  # exactly one of url and url_env
    url_env: str | None
    on: tuple[str, ...]  # finished | failed | retried | stopped


@dataclass(frozen=True)
class JobSpec:
    version: int
    name: str
    compute: Compute
    image: Image
    snapshot: str  # none | cpu | gpu
    retries: Retries
    keep_warm: KeepWarm
    checkpoint: Checkpoint
    secrets: tuple[str, ...]
    env: dict[str, str] = field(hash=False)
    train: Train = field(hash=False, default=None)  # type: ignore[assignment]
    stages: tuple[Stage, ...] = field(hash=False, default=())  # in the order they run
    environment: str | None = None  # the Modal Environment; None: the profile's active one
    budget_usd: float | None = None  # the run's budget in estimated US dollars; None: none
    notify: Notify | None = None  # the run's webhook; None: none

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, not tuples): what the generated app embeds. A job without stages
        has no `stages` key, so its app and spec hash are what they were before stages existed."""
        data = json.loads(json.dumps(asdict(self)))
        if not self.stages:
            del data["stages"]
        if self.environment is None:  # likewise for a job that names no Modal Environment
            del data["environment"]
        if self.budget_usd is None:  # and for a job without a budget
            del data["budget_usd"]
        if self.notify is None:  # and for one without a webhook
            del data["notify"]
        for stage in data.get("stages", []):
            if not stage["inputs"]:  # likewise a stage that declares no input files
                del stage["inputs"]
            if stage["checkpoint"] == "latest":  # and one that reads the latest checkpoint
                del stage["checkpoint"]
        # Likewise the fields of issue 19 at their defaults: the spec hash of a job that sets
        # none of them is what it was before they existed.
        if self.checkpoint.keep_best == 0:
            del data["checkpoint"]["keep_best"]
        if self.train.validate_every is None:
            del data["train"]["validate_every"]
        return data

    def stage(self, name: str) -> Stage | None:
        return next((stage for stage in self.stages if stage.name == name), None)

    @property
    def pipeline(self) -> tuple[StageName, ...]:
        """The stages in the order they run, train included: ("prepare", "train", "evaluate")."""
        before = tuple(stage.name for stage in self.stages if stage.name == "prepare")
        return before + ("train",) + tuple(stage.name for stage in self.stages if stage.name != "prepare")

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def gpu_string(self) -> list[str] | str | None:
        """The `gpu=` argument Modal takes: 'H100:8', or a ranked list of such strings."""
        return gpu_string(self.compute)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        image = data["image"]
        return cls(
            version=data["version"],
            name=data["name"],
            compute=_compute(data["compute"]),
            image=Image(image["dockerfile"], image["code"], GitSource(**image["git"])),
            snapshot=data["snapshot"],
            retries=Retries(**data["retries"]),
            keep_warm=KeepWarm(**data["keep_warm"]),
            checkpoint=Checkpoint(**data["checkpoint"]),
            secrets=tuple(data["secrets"]),
            env=dict(data["env"]),
            train=Train(**data["train"]),
            stages=tuple(_stage(stage) for stage in data.get("stages", [])),
            environment=data.get("environment"),
            budget_usd=data.get("budget_usd"),
            notify=_notify(data.get("notify")),
        )


def _notify(notify: dict[str, Any] | None) -> Notify | None:
    if notify is None:
        return None
    return Notify(notify.get("url"), notify.get("url_env"), tuple(notify["on"]))


def _compute(compute: dict[str, Any]) -> Compute:
    return Compute(**{**compute, "gpu": tuple(compute["gpu"]), "region": tuple(compute["region"])})


def _stage(stage: dict[str, Any]) -> Stage:
    return Stage(stage["name"], stage["run"], _compute(stage["compute"]), Retries(**stage["retries"]),
                 stage["snapshot"], dict(stage["config"]), tuple(stage.get("inputs", ())),
                 stage.get("checkpoint", "latest"))
