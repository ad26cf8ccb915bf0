"""A reviewer's summary of what a spec will do on Modal, with what it can cost."""

from __future__ import annotations

from collections.abc import Sequence

from launcher.cost import (cost, prices, stage_costs, stage_line, summary, sweep_cost,
                           total_worst_case)
from launcher.errors import printable
from launcher.spec.model import Compute, JobSpec
from launcher.spec.pipeline import (DRIVER_MARGIN_S, MODAL_MAX_TIMEOUT_S, bound_s, driver_timeout_s,
                                     steps)
from launcher.spec.rules import warnings as spec_warnings
from launcher.spec.sweep import Sweep
from launcher.spec.units import human_seconds, rough_duration
from launcher.spec.yamlpos import json_path


def _gpu_line(spec: JobSpec) -> str:
    return _hardware(spec.compute)


def _hardware(c: Compute) -> str:
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


def _writes_line(spec: JobSpec) -> str:
    c = spec.compute
    processes = c.gpu_count * c.nodes if c.gpu else c.nodes
    if spec.checkpoint.writes_in_background(processes):
        return ("in the background (checkpoint.async: "
                f"{'auto' if spec.checkpoint.async_write == 'auto' else 'true'}): the loop pauses "
                "only to copy the state; host memory holds one more copy of the model and "
                "optimizer state")
    if spec.checkpoint.async_write is False:
        return "in the training loop (checkpoint.async: false)"
    return (f"in the training loop: {processes} processes take part in each save "
            "(checkpoint.async: auto writes in the background with one process only)")


_SNAPSHOT = {
    "none": "none: both stages run at every cold start",
    "cpu": "cpu: stage 1 (imports, recipe on CPU) is snapshotted; stage 2 runs after restore",
    "gpu": "gpu (alpha): stage 1 and device state are snapshotted; stage 2 runs after restore",
}


def warnings(spec: JobSpec) -> list[str]:
    found = [f"warning: {json_path(path)}: {message}" for path, message in spec_warnings(spec)]
    c = cost(spec)
    idle = c.idle_containers
    if idle > 0:
        found.append(f"warning: keep_warm.min_containers is {idle}: {idle} container(s) "
                     f"({c.gpus_per_container} GPU each) stay up while idle, {c.idle_per_day()} a day "
                     "of GPU time")
    return found


def _stage_lines(spec: JobSpec) -> list[str]:
    """A pipeline's stages, each with its hardware, timeout, retries and cost, then the driver."""
    if not spec.stages:
        return []
    costs = dict(stage_costs(spec))
    lines = [f"pipeline    {' -> '.join(spec.pipeline)}: `launch` spawns the driver (a CPU "
             "function) that calls each stage in turn, so it runs on without this machine"]
    for step in steps(spec):
        what = spec.train.recipe if step.name == "train" else spec.stage(step.name).run  # type: ignore[union-attr]
        lines.append(f"  {step.name:<10}{what}; {_hardware(step.compute)}; "
                     f"timeout {human_seconds(step.compute.timeout_s)}, retries "
                     f"{step.retries.max_retries}; {stage_line(step.name, costs[step.name]).split(': ', 1)[1]}")
    bound = bound_s(spec)
    lines.append(f"  driver    1 CPU, 1024 MiB; timeout {rough_duration(driver_timeout_s(spec))} "
                 "(per stage attempt its start-up limit, Modal's default: the timeout, and its "
                 f"timeout; with retry delays, + {human_seconds(DRIVER_MARGIN_S)}); no retries of "
                 "its own; holds the job's lease to the end; time queued for capacity is under "
                 "no limit and can outlast it")
    if bound > MODAL_MAX_TIMEOUT_S:
        lines.append(f"  past 24h  the stages can take {rough_duration(bound)}, but Modal stops "
                     "the driver at 24h and does not restart it; the launcher does not stop the "
                     "stage call it waited on, and the job's lease stays held until that call's "
                     "last heartbeat is 24h old; what the stages committed stays on the volume, and "
                     "launching again then continues (prepare skipped when unchanged, train resumed)")
    lines.append(f"cost total  worst case one launch {total_worst_case(spec)} (every stage's GPU "
                 "worst case; CPU stages and the driver are billed for CPU and memory only)")
    return lines


def _environment_lines(spec: JobSpec) -> list[str]:
    if spec.environment is None:
        return []
    return [f"modal env   {spec.environment}: the app is deployed and its call spawned there, and "
            f"volume {spec.checkpoint.volume} and the secrets are looked up there"]


def _notify_lines(spec: JobSpec) -> list[str]:
    """Where notifications go, never the URL itself (whoever has it can post)."""
    if spec.notify is None:
        return []
    where = f"${spec.notify.url_env}" if spec.notify.url_env else "the URL in the spec (not shown)"
    return [f"notify      {', '.join(spec.notify.on)}: a webhook at {where}"]


def _usd(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.2f}"


def estimate_note() -> str:
    table = prices()
    return f"estimates from the plan's prices ({table['date']}, {table['source']})"


def _budget_lines(spec: JobSpec) -> list[str]:
    if spec.budget_usd is None:
        return []
    return [f"budget      ${spec.budget_usd:,.2f} for the run, against its worst case one launch "
            f"{total_worst_case(spec)}; {estimate_note()} (a single run is not yet stopped at its "
            "budget: a sweep's budget_usd holds its trials)"]


def sweep_lines(spec: JobSpec, sweep: Sweep) -> list[str]:
    """The search space, the trial count, and the worst cases against the budget."""
    c = sweep_cost(spec, sweep.trials)
    where = "the sweep's" if sweep.objective_from == "sweep" else "the recipe's"
    stop = {"none": "none", "median": "median (a trial worse than the median of the others at "
            "the same update is stopped gracefully)", "hyperband": "hyperband (successive halving)"}
    lines = [f"sweep       {sweep.method}, {sweep.trials} trials, {sweep.parallel} at once; objective "
             f"{sweep.metric} ({sweep.direction}, {where}); early stop {stop[sweep.early_stop]}"]
    width = max(len(p.path) for p in sweep.parameters)
    lines += [f"  {p.path:<{width}}  {p.describe()}" for p in sweep.parameters]
    grid = sweep.grid_size()
    if grid is not None:
        lines.append(f"  space     {grid} combinations")
    stages = [s.name for s in spec.stages]
    once = (["prepare runs once for the sweep (every trial reads its data)"] if "prepare" in stages else []) + \
        (["evaluate runs once, on the best trial"] if "evaluate" in stages else [])
    lines.append(f"  trials    each a run of the job with its parameters, in job folder "
                 f"{spec.name}-tNNN{'; ' + ', '.join(once) if once else ''}")
    lines.append(f"sweep cost  worst case one trial {_usd(c.trial)}, whole sweep {_usd(c.whole)} "
                 f"({sweep.trials} trials{' + the stages run once' if once else ''}); {estimate_note()}")
    if sweep.budget_usd is not None:
        if c.trial is None:
            verdict = "no price on file for the GPU: the budget cannot be held"
        elif c.whole is not None and c.whole <= sweep.budget_usd:
            verdict = "covers the worst case of the whole sweep"
        else:
            fits = int((sweep.budget_usd - (c.once or 0)) // c.trial) if c.trial else sweep.trials
            verdict = (f"covers the worst case of {max(fits, 0)} of {sweep.trials} trials; no trial starts "
                       "when the spend so far and the running trials' worst case would pass it")
        lines.append(f"  budget    ${sweep.budget_usd:,.2f}: {verdict}")
    return lines


def plan(spec: JobSpec, source: str, code_line: str, code_lines: Sequence[str] = (),
         sweep: Sweep | None = None) -> str:
    """`code_lines`: what ships of the code, under the `code` line; `sweep`: the search of a
    sweep spec, whose trials run `spec`."""
    k = spec.keep_warm
    lines = [
        f"plan: {spec.name} from {source} (spec sha256 {spec.hash[:12]})",
        *_environment_lines(spec),
        f"compute     {_gpu_line(spec)}",
        f"timeout     {human_seconds(spec.compute.timeout_s)} per attempt",
        f"retries     {_retries_line(spec)}",
        f"snapshot    {_SNAPSHOT[spec.snapshot]}",
        f"keep-warm   min {k.min_containers}, buffer {k.buffer_containers}, "
        f"max {k.max_containers if k.max_containers is not None else 'unlimited'}, "
        f"scale down after {human_seconds(k.scaledown_window_s)} idle",
        f"checkpoint  {_commit_line(spec)}",
        f"  writes    {_writes_line(spec)}",
        f"train       {spec.train.recipe}, {spec.train.steps} steps, seed {spec.train.seed}, "
        f"mixed precision {spec.train.mixed_precision}",
        f"code        {code_line}",
        *code_lines,
        *_notify_lines(spec),
        summary(spec),
        *_budget_lines(spec),
        *_stage_lines(spec),
        *(sweep_lines(spec, sweep) if sweep is not None else []),
        *warnings(spec),
    ]
    return "".join(f"{printable(line)}\n" for line in lines)
