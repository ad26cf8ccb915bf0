"""What a job can cost in GPU time: one model, shown as the plan's line and --explain's breakdown."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from launcher.spec.model import Compute, JobSpec, Retries
from launcher.spec.pipeline import steps
from launcher.spec.units import human_seconds


@cache
def prices() -> dict[str, Any]:
    """USD per GPU-hour, with their date and source, from launcher/data/prices.json."""
    return json.loads(resources.files("launcher").joinpath("data/prices.json").read_text("utf-8"))


@dataclass(frozen=True)
class Cost:
    """GPU cost of one spec at its first-choice GPU type; CPU and memory are billed apart."""

    gpu_type: str | None  # None: CPU only
    price: float | None  # per GPU-hour; None: no price on file for the type
    gpus: int  # per launch, all nodes together
    gpus_per_container: int
    nodes: int
    fallbacks: int  # GPU types after the first choice
    attempts: int  # 1 + max_retries
    idle_containers: int  # keep_warm.min_containers
    timeout_s: int

    def dollars(self, gpu_hours: float) -> str:
        return "unknown" if self.price is None else f"${self.price * gpu_hours:,.2f}"

    def running(self) -> str:
        return self.dollars(self.gpus)

    def worst_case(self) -> str:
        return self.dollars(self.gpus * self.timeout_s / 3600 * self.attempts)

    def idle_per_day(self) -> str:
        return self.dollars(self.gpus_per_container * self.idle_containers * 24)


def cost_of(c: Compute, retries: Retries, idle: int = 0,
            table: dict[str, Any] | None = None) -> Cost:
    """The GPU cost of one container kind: its compute, retries and idle (keep-warm) containers."""
    first = c.gpu[0] if c.gpu else None
    price = 0.0 if first is None else (table or prices())["gpu"].get(first)
    per_container = c.gpu_count if first else 0
    return Cost(first, price, per_container * c.nodes, per_container, c.nodes,
                max(len(c.gpu) - 1, 0), 1 + retries.max_retries, idle, c.timeout_s)


def cost(spec: JobSpec, table: dict[str, Any] | None = None) -> Cost:
    """Train's cost (the job's compute)."""
    return cost_of(spec.compute, spec.retries, spec.keep_warm.min_containers, table)


def stage_costs(spec: JobSpec, table: dict[str, Any] | None = None) -> list[tuple[str, Cost]]:
    """(stage, cost) for every stage of a pipeline, in order, train included."""
    return [(step.name, cost_of(step.compute, step.retries, table=table)) for step in steps(spec)]


def total_worst_case(spec: JobSpec, table: dict[str, Any] | None = None) -> str:
    """The worst case of one launch of the whole pipeline: every stage's, added up."""
    costs = [c for _, c in stage_costs(spec, table)]
    if any(c.price is None for c in costs):
        return "unknown"
    return f"${sum(c.price * c.gpus * c.timeout_s / 3600 * c.attempts for c in costs):,.2f}"  # type: ignore[operator]


def stage_line(name: str, c: Cost) -> str:
    """A stage's hardware-independent cost: per hour running and its worst case."""
    if c.gpu_type is None:
        return f"{name}: GPU $0/h (CPU only)"
    unknown = "" if c.price is not None else f" (no price on file for {c.gpu_type})"
    return (f"{name}: {c.running()}/h for {c.gpus} × {c.gpu_type}{unknown}, worst case "
            f"{c.worst_case()} ({human_seconds(c.timeout_s)} × {_plural(c.attempts, 'attempt')})")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def summary(spec: JobSpec, table: dict[str, Any] | None = None) -> str:
    """The plan's one line: per hour running, and the worst case for one launch."""
    c = cost(spec, table)
    if c.gpu_type is None:
        return "cost        GPU $0/h (CPU only; CPU and memory are billed too, not priced here)"
    unknown = "" if c.price is not None else f" (no price on file for {c.gpu_type})"
    return (f"cost        {c.running()}/h for {c.gpus} × {c.gpu_type}{unknown}; worst case one launch "
            f"{c.worst_case()} ({human_seconds(c.timeout_s)} × {_plural(c.attempts, 'attempt')})")


def breakdown(spec: JobSpec, table: dict[str, Any]) -> list[str]:
    """--explain's lines: per hour running, worst case for one launch, keep-warm idle per day."""
    c = cost(spec, table)
    head = (f"cost (GPU only; prices {table['date']}, {table['source']}, "
            f"{table['currency']} {table['unit']}):")
    stage_part = [*[f"  stage {stage_line(name, sc)}" for name, sc in stage_costs(spec, table)],
                  f"  pipeline worst case {total_worst_case(spec, table)} (every stage's worst "
                  "case added up); train:"] if spec.stages else []
    if c.gpu_type is None:
        return [head, *stage_part,
                "  CPU only: no GPU cost (CPU and memory are billed too, not priced here)"]
    rate = (f"no price on file for {c.gpu_type}" if c.price is None
            else f"{c.gpu_type} at ${c.price:,.4f}")
    fallback = f"; priced at the first choice of {c.fallbacks + 1}" if c.fallbacks else ""
    per_container = _plural(c.gpus_per_container, "GPU")
    return [
        head,
        *stage_part,
        f"  per hour running    {c.running()} ({rate} × {per_container} × {_plural(c.nodes, 'node')}"
        f"{fallback})",
        f"  worst case launch   {c.worst_case()} "
        f"({human_seconds(c.timeout_s)} timeout × {_plural(c.attempts, 'attempt')})",
        f"  keep-warm idle      {c.idle_per_day()} a day "
        f"({_plural(c.idle_containers, 'container')} × {per_container} × 24h)",
    ]


def worst_usd(c: Cost) -> float | None:
    """A cost's worst case in dollars: every attempt running to its timeout; None: no price."""
    return None if c.price is None else c.price * c.gpus * c.timeout_s / 3600 * c.attempts


@dataclass(frozen=True)
class SweepCost:
    """A sweep's worst cases: one trial (train), the stages that run once (prepare before the
    trials, evaluate on the best), and the whole sweep; None where a price is missing."""

    trial: float | None
    once: float | None
    whole: float | None


def sweep_cost(spec: JobSpec, trials: int, table: dict[str, Any] | None = None) -> SweepCost:
    costs = dict(stage_costs(spec, table))
    trial = worst_usd(costs.pop("train"))
    others = [worst_usd(c) for c in costs.values()]
    once = None if any(o is None for o in others) else sum(others)  # type: ignore[arg-type]
    whole = None if trial is None or once is None else trial * trials + once
    return SweepCost(trial, once, whole)
