"""The coordinator: Optuna's ask-and-tell around trials that a `TrialRunner` runs.

The coordinator asks in one thread (its own); each trial runs in a thread of its own through
the runner, which calls `report(step, metrics)` at the trial's reporting cadence. A report
feeds the trial's objective to the pruner; when the pruner says stop, `report` returns True
and the runner stops the trial gracefully (a final checkpoint). Every change of the study is
copied to the volume (`StudyStore.publish`) before the coordinator goes on, so a restart loses
nothing it had decided.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState

from launcher.runtime.sweep.budget import Budget
from launcher.runtime.sweep.journal import StudyStore
from launcher.runtime.sweep.search import params_of, space
from launcher.spec.sweep_model import Sweep


@dataclass(frozen=True)
class TrialRun:
    number: int
    job: str  # the trial's job: its folder on the volume
    params: dict[str, Any]  # by dotted path
    resumed: bool  # it ran before a restart of the coordinator: it resumes from its checkpoints
    report: Callable[[int, dict[str, float]], bool]  # True: stop the trial (pruned)


@dataclass(frozen=True)
class TrialEnd:
    status: str  # finished | stopped (pruned, or interrupted) | failed
    message: str = ""


class TrialRunner(Protocol):
    def run(self, trial: TrialRun) -> TrialEnd:
        """Run the trial to its end (blocking; called in the trial's own thread)."""
        ...

    def stop(self, number: int) -> None:
        """Ask trial `number` to stop gracefully (final checkpoint), if it runs."""
        ...


@dataclass
class Live:
    trial: optuna.trial.Trial
    job: str
    started: float
    prior_s: float  # seconds it ran before a restart
    best: float | None = None
    step: int = 0
    pruned: bool = False
    reported: set[int] = field(default_factory=set)  # steps reported, before a restart too

    def seconds(self) -> float:
        return self.prior_s + time.monotonic() - self.started


@dataclass
class Outcome:
    trials: list[dict[str, Any]] = field(default_factory=list)  # one row per trial, in order
    best: dict[str, Any] | None = None
    stopped_by_budget: str | None = None
    interrupted: bool = False
    # The coordinator's own work (ask, report, tell, copies to the volume), all trials
    # together: CPU time of the threads doing it, so that waiting for a busy machine's CPUs
    # (the trials' own processes) does not count.
    overhead_s: float = 0.0


def job_name(sweep_name: str, number: int) -> str:
    return f"{sweep_name}-t{number:03d}"


class Coordinator:
    def __init__(self, name: str, sweep: Sweep, study: optuna.Study, store: StudyStore,
                 runner: TrialRunner, budget: Budget, log: Callable[[str], None]) -> None:
        self.name, self.sweep, self.study, self.store = name, sweep, study, store
        self.runner, self.budget, self.log = runner, budget, log
        self.live: dict[int, Live] = {}
        self.lock = threading.Lock()  # the study and `live`, between trial threads and this one
        self.ended: queue.Queue[tuple[int, TrialEnd]] = queue.Queue()
        self.stopping = False
        self.outcome = Outcome()
        self.overhead_s = 0.0

    # -- the trials' side -------------------------------------------------------------------

    def _report(self, number: int, step: int, metrics: dict[str, float]) -> bool:
        value = metrics.get(self.sweep.metric)
        if value is None:
            return False
        started = time.thread_time()
        with self.lock:
            live = self.live[number]
            better = max if self.sweep.direction == "max" else min
            live.best = value if live.best is None else better(live.best, value)
            live.step = step
            if step not in live.reported:  # a resumed trial reports its last steps again
                live.trial.report(value, step)
                live.reported.add(step)
            live.trial.set_user_attr("seconds", round(live.seconds(), 3))
            prune = not live.pruned and live.trial.should_prune()
            if prune:
                live.pruned = True
                live.trial.set_user_attr("pruned_at", step)
            self.overhead_s += time.thread_time() - started
        self._publish()
        if prune:
            self.log(f"trial {number} ({live.job}): pruned at update {step} ({self.sweep.metric} "
                     f"{value:.4g}); stopping it gracefully")
        return prune

    def _run(self, run: TrialRun) -> None:
        try:
            end = self.runner.run(run)
        except Exception as exc:  # a trial's failure is the trial's, never the sweep's
            end = TrialEnd("failed", f"{type(exc).__name__}: {exc}")
        self.ended.put((run.number, end))

    # -- the coordinator's side ---------------------------------------------------------------

    def _publish(self) -> None:
        started = time.thread_time()
        self.store.publish()
        with self.lock:
            self.overhead_s += time.thread_time() - started

    def _start(self, trial: optuna.trial.Trial, resumed: optuna.trial.FrozenTrial | None) -> None:
        """`resumed`: the trial as it was before a restart (None: a new trial)."""
        number = trial.number
        params = params_of(self.sweep, trial.params)
        job = job_name(self.name, number)
        if resumed is None:
            trial.set_user_attr("job", job)
            trial.set_user_attr("params", params)
        prior = 0.0 if resumed is None else resumed.user_attrs.get("seconds", 0.0)
        with self.lock:
            self.live[number] = Live(trial, job, time.monotonic(), prior)
            if resumed is not None:
                self.live[number].reported.update(resumed.intermediate_values)
        self._publish()
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        self.log(f"trial {number} ({job}): {'resumed after the restart, ' if resumed else ''}{shown}")
        run = TrialRun(number, job, params, resumed is not None, lambda step, m: self._report(number, step, m))
        threading.Thread(target=self._run, args=(run,), daemon=True, name=f"trial-{number}").start()

    def _budget_allows(self) -> bool:
        finished = sum(t.user_attrs.get("seconds", 0.0) for t in self.study.get_trials(deepcopy=False)
                       if t.state.is_finished())
        with self.lock:
            running = [live.seconds() for live in self.live.values()]
        if self.budget.allows(finished, running):
            self.outcome.stopped_by_budget = None
            return True
        spent = self.budget.spent(finished + sum(running))
        said = self.outcome.stopped_by_budget
        self.outcome.stopped_by_budget = (
            f"budget ${self.budget.limit_usd:,.2f}: no new trial, since the spend so far "
            f"(${spent:,.2f}) with the worst case of the running trials and of one more "
            f"(${self.budget.trial_worst_usd:,.2f}) would pass it (estimates from the plan's prices)")
        if said is None:
            self.log(self.outcome.stopped_by_budget)
        return False

    def _end(self, number: int, end: TrialEnd) -> None:
        started = time.thread_time()
        with self.lock:
            live = self.live.pop(number)
        live.trial.set_user_attr("seconds", round(live.seconds(), 3))
        live.trial.set_user_attr("updates", live.step)
        if live.pruned:
            self._tell(number, state=TrialState.PRUNED)
            state = "pruned"
        elif end.status == "finished" and live.best is not None:
            self._tell(number, live.best)
            state = "complete"
        elif end.status == "stopped" and self.stopping:
            state = "interrupted"  # stays running in the study: resumed at the next start
        else:
            why = end.message or f"{self.sweep.metric} was never reported"
            live.trial.set_user_attr("error", why)
            self._tell(number, state=TrialState.FAIL)
            state = "failed"
        with self.lock:
            self.overhead_s += time.thread_time() - started
        self._publish()
        value = "n/a" if live.best is None else f"{live.best:.4g}"
        self.log(f"trial {number} ({live.job}): {state}, best {self.sweep.metric} {value} at "
                 f"update {live.step}{'; ' + end.message if state == 'failed' and end.message else ''}")

    def _tell(self, number: int, value: float | None = None, state: TrialState | None = None) -> None:
        """Optuna's tell. GridSampler calls `study.stop()` when the grid is done, which raises
        outside `study.optimize`; the trial's state is stored by then (in a `finally`), and
        the coordinator stops on its own count."""
        try:
            self.study.tell(number, value, state=state)
        except RuntimeError as exc:
            if "Study.stop" not in str(exc):
                raise

    def stop(self) -> None:
        """Ctrl-C: no new trials; the running ones stop gracefully and resume at the next start."""
        self.stopping = True
        with self.lock:
            numbers = list(self.live)
        for number in numbers:
            self.runner.stop(number)

    def run(self) -> Outcome:
        pending = [t for t in self.study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
        done = len(self.study.get_trials(deepcopy=False)) - len(pending)
        if pending or done:
            self.log(f"resuming the sweep: {done} trials ended before the restart stand, "
                     f"{len(pending)} that were running resume with their parameters")
        while True:
            while not self.stopping and len(self.live) < self.sweep.parallel:
                if not pending and len(self.study.get_trials(deepcopy=False)) >= self.sweep.trials:
                    break
                if not self._budget_allows():
                    break  # until a running trial ends (its worst case no longer ahead)
                started = time.thread_time()
                frozen = pending.pop(0) if pending else None
                # A trial that was running: the same trial of the study, with its parameters
                # (its id in the storage is stable).
                trial = (self.study.ask(space(self.sweep)) if frozen is None else optuna.trial.Trial(
                    self.study, self.store.trial_id(self.study.study_name, frozen.number)))
                with self.lock:
                    self.overhead_s += time.thread_time() - started
                self._start(trial, frozen)
            if not self.live:
                break  # all done, or the budget allows no trial even with none running
            self._end(*self.ended.get())
        self.outcome.interrupted = self.stopping
        self.outcome.overhead_s = self.overhead_s
        self.outcome.trials = rows(self.study, self.sweep, self.budget)
        complete = [t for t in self.study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        if complete:
            best = self.study.best_trial
            self.outcome.best = {"number": best.number, "job": best.user_attrs["job"],
                                 "value": best.value, "params": best.user_attrs["params"]}
        return self.outcome


def rows(study: optuna.Study, sweep: Sweep, budget: Budget) -> list[dict[str, Any]]:
    """The sweep view: trial, parameters, best objective, updates reached, state, cost."""
    states = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
              TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}
    out = []
    for t in study.get_trials(deepcopy=False):
        values = list(t.intermediate_values.values())
        better = max if sweep.direction == "max" else min
        out.append({"trial": t.number, "job": t.user_attrs.get("job"), "params": t.user_attrs.get("params", {}),
                    "state": states[t.state], "best": better(values) if values else None,
                    "updates": t.user_attrs.get("updates", max(t.intermediate_values, default=0)),
                    "seconds": t.user_attrs.get("seconds", 0.0),
                    "cost_usd": budget.spent(t.user_attrs.get("seconds", 0.0)),
                    "error": t.user_attrs.get("error")})
    return out
