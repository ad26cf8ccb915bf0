"""`launch SWEEP.yaml --local`: the sweep's coordinator here, each trial a local run.

Prepare once (a pipeline's), the trials through Optuna's ask-and-tell, evaluate once on the
best trial, then the sweep view and `<name>.best.yaml` beside the spec. On Modal the
coordinator is not built yet: `launch SWEEP.yaml` without --local says so.
"""

from __future__ import annotations

import json
from dataclasses import replace
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import yaml

from launcher import gitinfo, repofiles
from launcher.backends import jobfolder
from launcher.backends.local import Options, folders, new_run_id, stop_signals
from launcher.cost import stage_costs, sweep_cost, worst_usd
from launcher.errors import RunError
from launcher.load import Loaded, load_spec
from launcher.spec.refs import use_root
from launcher.spec.sweep import Sweep, without_sweep
from launcher.spec.yamlpos import load as load_yaml

SWEEP_FOLDER = "sweep"  # in the sweep's job folder on the volume: the study's journal


def sweep(job: str, sets: tuple[str, ...], local: bool, options: Options) -> int:
    if not local:
        raise RunError(f"{job}: sweeps run with --local for now; the coordinator on Modal (a CPU "
                       "function that `launch` spawns) is not built yet")
    loaded = load_spec(job, sets)
    assert loaded.sweep is not None
    repo = gitinfo.find_repo(Path(job).resolve())
    use_root(repo.root)
    repofiles.require_inputs(loaded.doc, loaded.spec, repo.root)
    return run_sweep(loaded, loaded.sweep, repo.root, replace(options, code_root=repo.root))


def _budget(loaded: Loaded, sweep: Sweep) -> Any:
    from launcher.runtime.sweep.budget import Budget

    costs = dict(stage_costs(loaded.spec))
    train = costs["train"]
    per_hour = (train.price or 0.0) * train.gpus
    evaluate = worst_usd(costs["evaluate"]) if "evaluate" in costs else 0.0
    return Budget(sweep.budget_usd, per_hour, sweep_cost(loaded.spec, 1).trial or 0.0, evaluate or 0.0)


def run_sweep(loaded: Loaded, sweep: Sweep, repo_root: Path, options: Options) -> int:
    from launcher.backends.sweep import LocalTrials
    from launcher.runtime.sweep import search
    from launcher.runtime.sweep.coordinator import Coordinator
    from launcher.runtime.sweep.journal import StudyStore

    spec = loaded.spec
    log = lambda text: click.echo(f"[sweep] {text}", err=True)  # noqa: E731
    trials = LocalTrials(without_sweep(loaded.doc), spec, loaded.source, repo_root, options,
                         (sweep.metric, sweep.direction))
    volumes = folders(spec, repo_root, options)[1]
    lock = jobfolder.JobLock(volumes, spec.checkpoint.volume, f"{spec.name}.sweep", new_run_id())
    lock.acquire()
    started = time.perf_counter()
    try:
        if not trials.prepare(log):
            raise RunError(f"{loaded.source}: the sweep's prepare failed; no trial was started")
        with tempfile.TemporaryDirectory(prefix="launch-sweep-") as own:
            store = StudyStore(Path(own), volumes / spec.checkpoint.volume / spec.name / SWEEP_FOLDER)
            study = search_study(store, spec, sweep, search)
            same_search(study, sweep, loaded.source)
            coordinator = Coordinator(spec.name, sweep, study, store, trials, _budget(loaded, sweep), log)
            with stop_signals(lambda _signum: coordinator.stop()):
                outcome = coordinator.run()
            picture = draw_picture(study, sweep, folders(spec, repo_root, options)[0] / "sweep.png")
    finally:
        lock.release()
    click.echo(view(spec.name, sweep, outcome, time.perf_counter() - started), err=True)
    click.echo(f"[sweep] {picture}", err=True)
    if outcome.interrupted:
        click.echo("[sweep] interrupted: the same command resumes it", err=True)
        return 130
    if outcome.best is None:
        return 1
    best_file = write_best(loaded, sweep, outcome.best)
    click.echo(f"[sweep] best parameters written to {best_file}: launch {best_file}", err=True)
    evaluated = trials.evaluate(outcome.best["job"], outcome.best["params"])
    if evaluated is not None:
        from launcher.runtime.pipeline.stages import describe

        click.echo(f"[sweep] evaluate on trial {outcome.best['number']}: {evaluated['status']}; "
                   f"{describe(evaluated.get('metrics') or {})}", err=True)
        if evaluated["status"] != "finished":
            return 1
    return 0


def search_study(store: Any, spec: Any, sweep: Sweep, search: Any) -> Any:
    from launcher.runtime.sweep.journal import open_study

    # Trials report their objective at each validation (train.validate_every); a job that
    # does not validate reports at its logging cadence.
    every = spec.train.validate_every or spec.train.log_every
    study = open_study(store, spec.name, sweep.direction, search.sampler(sweep),
                       search.pruner(sweep, spec.train.steps, every))
    asked = len(study.get_trials(deepcopy=False))
    if asked:  # restored: new trials draw on from where the sampler left off, not again
        study.sampler = search.sampler(sweep, asked)
    return study


def draw_picture(study: Any, sweep: Sweep, path: Path) -> str:
    """The sweep's picture, or why there is none; a line to print."""
    from launcher.runtime.sweep import picture

    if not picture.can_draw():
        return "no picture: matplotlib is not installed (pip install 'modal-launcher[report]')"
    if not any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        return "no picture: no trial reported its objective"
    return f"picture: {picture.draw(study, sweep, path)}"


def same_search(study: Any, sweep: Sweep, source: str) -> None:
    """A sweep's folder holds one search: a restart resumes it; a changed search (space,
    method, objective, early stopping) is refused before anything runs: its trials would mix."""
    # trials, parallel and the budget may change between starts (a sweep extended, say)
    mine = {k: v for k, v in json.loads(json.dumps(sweep.to_dict())).items()
            if k not in ("trials", "parallel", "budget_usd")}
    found = study.user_attrs.get("sweep")
    if found is None:
        study.set_user_attr("sweep", mine)
    elif found != mine:
        changed = sorted(k for k in mine if found.get(k) != mine[k])
        raise RunError(f"{source}: the sweep's folder on the volume holds a sweep with other "
                       f"settings ({', '.join(changed)}); give the sweep another name: to resume "
                       "the earlier one, undo the change")


def view(name: str, sweep: Sweep, outcome: Any, seconds: float) -> str:
    """The sweep view: one row per trial, then the best, the budget and the overhead."""
    head = f"{'trial':<6}{'state':<10}{'best ' + sweep.metric:>16}{'updates':>9}{'cost':>9}  parameters"
    lines = [f"summary: sweep {name}, {len(outcome.trials)} trials, {seconds:.1f} s", head]
    for row in outcome.trials:
        best = "n/a" if row["best"] is None else f"{row['best']:.4g}"
        params = ", ".join(f"{k.rsplit('.', 1)[-1]}={_short(v)}" for k, v in row["params"].items())
        lines.append(f"{row['trial']:<6}{row['state']:<10}{best:>16}{row['updates']:>9}"
                     f"{'$' + format(row['cost_usd'], '.4f'):>9}  {params}")
    if outcome.best is not None:
        lines.append(f"best: trial {outcome.best['number']} ({outcome.best['job']}), {sweep.metric} "
                     f"{outcome.best['value']:.4g} ({sweep.direction})")
    spent = sum(row["cost_usd"] for row in outcome.trials)
    lines.append(f"spend: ${spent:,.4f} estimated from the plan's prices for the trials' wall time"
                 + (f" (budget ${sweep.budget_usd:,.2f})" if sweep.budget_usd is not None else ""))
    if outcome.stopped_by_budget:
        lines.append(f"stopped early: {outcome.stopped_by_budget}")
    if outcome.trials:
        lines.append(f"coordinator overhead: {1000 * outcome.overhead_s / len(outcome.trials):.1f} ms "
                     "per trial (CPU time of ask, report, tell and copies to the volume)")
    return "\n".join(lines)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _nest(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in params.items():
        here = out
        *parents, leaf = path.split(".")
        for key in parents:
            here = here.setdefault(key, {})
        here[leaf] = value
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) else value
    return out


def write_best(loaded: Loaded, sweep: Sweep, best: dict[str, Any]) -> Path:
    """`<name>.best.yaml` beside the sweep spec: the job it extends, the sweep file's own
    settings, and the best trial's parameters; ready to `launch`."""
    own = load_yaml(loaded.path, loaded.source).value
    body = {k: v for k, v in own.items() if k not in ("version", "sweep")}
    out = _merge({"version": 1, **body}, _nest(best["params"]))
    path = loaded.path.with_name(f"{loaded.spec.name}.best.yaml")
    header = (f"# The best trial of the sweep {loaded.path.name}: trial {best['number']} "
              f"({best['job']}), {sweep.metric} {best['value']:.6g} ({sweep.direction}).\n"
              f"# Written by launch; run it with: launch {path.name}\n")
    path.write_text(header + yaml.safe_dump(out, sort_keys=False), "utf-8")
    return path
