"""A reviewer's summary of what a spec will do on Modal, with what it can cost."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from launcher.spec.model import JobSpec
from launcher.spec.units import human_seconds


@cache
def prices() -> dict:
    """USD per GPU-hour, with their date and source, from launcher/data/prices.json."""
    return json.loads(resources.files("launcher").joinpath("data/prices.json").read_text("utf-8"))


@dataclass(frozen=True)
class Cost:
    """GPU cost of one spec at its first-choice GPU type; CPU and memory are billed apart."""

    gpu_type: str | None  # None: CPU only
    price: float | None  # per GPU-hour; None: no price on file for the type
    gpus: int  # per launch, all nodes together
    gpus_per_container: int
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


def cost(spec: JobSpec, table: dict | None = None) -> Cost:
    c, first = spec.compute, (spec.compute.gpu[0] if spec.compute.gpu else None)
    price = 0.0 if first is None else (table or prices())["gpu"].get(first)
    per_container = c.gpu_count if first else 0
    return Cost(first, price, per_container * c.nodes, per_container,
                1 + spec.retries.max_retries, spec.keep_warm.min_containers, c.timeout_s)


def _gpu_line(spec: JobSpec) -> str:
    c = spec.compute
    nodes = f"{c.nodes} node{'s' if c.nodes > 1 else ''}"
    if not c.gpu:
        return f"CPU only × {nodes}, {c.cpu:g} CPU, {c.memory_mib} MiB"
    fallbacks = f" (fallbacks: {', '.join(c.gpu[1:])})" if len(c.gpu) > 1 else ""
    rdma = ", RDMA" if c.rdma and c.nodes > 1 else ""
    return (f"{c.gpu_count} × {c.gpu[0]} × {nodes}{rdma}{fallbacks}, "
            f"{c.cpu:g} CPU, {c.memory_mib} MiB per container")


def _retries_line(spec: JobSpec) -> str:
    r = spec.retries
    if r.max_retries == 0:
        return "none (preemptions restart without counting)"
    return (f"{r.max_retries}, first after {human_seconds(r.initial_delay_s)}, ×{r.backoff_coefficient:g} "
            f"each, at most {human_seconds(r.max_delay_s)} apart (preemptions do not count)")


def _commit_line(spec: JobSpec) -> str:
    p = spec.checkpoint
    every = [f"{p.every_steps} steps" for _ in [0] if p.every_steps] + \
            [human_seconds(p.every_s) for _ in [0] if p.every_s]
    return (f"every {' or '.join(every)}{', whichever first' if len(every) > 1 else ''}, "
            f"volume commit after each; keep last {p.keep_last} on volume {p.volume} at {p.mount}; "
            f"resume {p.resume}")


_SNAPSHOT = {
    "none": "none: both stages run at every cold start",
    "cpu": "cpu: stage 1 (imports, recipe on CPU) is snapshotted; stage 2 runs after restore",
    "gpu": "gpu (alpha): stage 1 and device state are snapshotted; stage 2 runs after restore",
}


def cost_lines(spec: JobSpec) -> list[str]:
    c = cost(spec)
    if c.gpu_type is None:
        return ["cost        GPU $0/h (CPU only; CPU and memory are billed too, not priced here)"]
    what = f"{c.gpus} × {c.gpu_type}"
    unknown = "" if c.price is not None else f" (no price on file for {c.gpu_type})"
    return [f"cost        {c.running()}/h for {what}{unknown}; worst case one launch "
            f"{c.worst_case()} ({human_seconds(c.timeout_s)} × {c.attempts} "
            f"attempt{'s' if c.attempts > 1 else ''})"]


def warnings(spec: JobSpec) -> list[str]:
    c = cost(spec)
    idle = c.idle_containers
    if idle <= 0:
        return []
    return [f"warning: keep_warm.min_containers is {idle}: {idle} container(s) "
            f"({c.gpus_per_container} GPU each) stay up while idle, {c.idle_per_day()} a day of GPU time"]


def plan(spec: JobSpec, source: str, code_line: str) -> str:
    k = spec.keep_warm
    lines = [
        f"plan: {spec.name} from {source} (spec sha256 {spec.hash[:12]})",
        f"compute     {_gpu_line(spec)}",
        f"timeout     {human_seconds(spec.compute.timeout_s)} per attempt",
        f"retries     {_retries_line(spec)}",
        f"snapshot    {_SNAPSHOT[spec.snapshot]}",
        f"keep-warm   min {k.min_containers}, buffer {k.buffer_containers}, "
        f"max {k.max_containers if k.max_containers is not None else 'unlimited'}, "
        f"scale down after {human_seconds(k.scaledown_window_s)} idle",
        f"checkpoint  {_commit_line(spec)}",
        f"train       {spec.train.recipe}, {spec.train.steps} steps, seed {spec.train.seed}, "
        f"mixed precision {spec.train.mixed_precision}",
        f"code        {code_line}",
        *cost_lines(spec),
        *warnings(spec),
    ]
    return "\n".join(lines) + "\n"
