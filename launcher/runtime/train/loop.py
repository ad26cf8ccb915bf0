"""One training process: the Accelerator, the update loop, its cadence, logs and result.

The loop gets a `LoopContext` (spec, recipe, folders, volume, stage timings) and talks to
three things through their own faces: the recipe (`setup`, `train_step`), Accelerate's
trackers (`init_trackers`, `log`, `end_training`), and the checkpoint manager
(`checkpoint/manager.py`: `resume`, `save`, `wait`, `close`), which owns everything about
checkpoints, the distributed protocol included. It decides *when* to checkpoint (the
cadence, a stop signal, the end); never *how*. It knows nothing of the session that made
it, and nothing it talks to knows the loop.

Its state is one `LoopState`: a `Phase` (prepared, run, broken), the step, the step of the
checkpoint it holds, the one it resumed from; each change is a named transition, and what a
session asks of a loop (`unsaved`, `reusable`) is answered there.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher.runtime import events, faults
from launcher.runtime.checkpoint import resume_policy
from launcher.runtime.checkpoint.manager import Checkpointer, LoadFailed, checkpointer
from launcher.runtime.failures import PermanentError, Preempted
from launcher.runtime.lifecycle import timeline
from launcher.runtime.lifecycle.signals import StopFlag
from launcher.runtime.pipeline import stages
from launcher.runtime.recipe import checks, objective
from launcher.runtime.train import history, results, trackers
from launcher.runtime.train.context import LoopContext


class Phase(enum.Enum):
    PREPARED = "prepared"  # placed and resumed (or started fresh); not run yet
    RUN = "run"  # has run: its step may be ahead of the checkpoint it holds
    BROKEN = "broken"  # a half-applied update or a half-done load: never saved nor run again


@dataclass
class LoopState:
    """Where a loop is; changed only by the transitions below."""

    phase: Phase = Phase.PREPARED
    step: int = 0  # updates done
    saved_step: int | None = None  # the step of the checkpoint it holds (saved or loaded)
    resumed_from: int | None = None  # the checkpoint it loaded (None: it started fresh)

    def loaded(self, step: int) -> None:
        """Prepared from checkpoint `step` (0: fresh): it holds what it loaded, nothing else."""
        self.step = step
        self.resumed_from = self.saved_step = step or None

    def caught_up(self, step: int) -> None:
        """A warm container's loop loaded the volume's newer checkpoint `step`."""
        self.step = self.saved_step = self.resumed_from = step

    def started(self) -> None:
        if self.phase is Phase.PREPARED:
            self.phase = Phase.RUN

    def broke(self) -> None:
        self.phase = Phase.BROKEN

    def saved(self) -> None:
        self.saved_step = self.step

    @property
    def unsaved(self) -> bool:
        """It ran past the checkpoint it holds, and is not broken (a broken state is never saved)."""
        return self.phase is Phase.RUN and self.saved_step != self.step

    def reusable(self, resume: bool) -> bool:
        """Whether a warm container may run it again: never when broken; for a fresh start
        (`resume` false), only as built (never run, nothing loaded)."""
        if self.phase is Phase.BROKEN:
            return False
        return resume or (self.phase is Phase.PREPARED and not self.resumed_from)


class Loop:
    def __init__(self, ctx: LoopContext) -> None:
        self.ctx = ctx
        self.spec = ctx.spec
        self.acc: Any = None
        self._checkpoints: Checkpointer | None = None  # made with the Accelerator, in place()
        self.state = LoopState()
        self.updates = 0  # updates done by this loop (this attempt)
        self.last_save = time.monotonic()
        self.last_metrics: dict[str, float] = {}
        recipe_cls = type(ctx.recipe)
        # What the recipe says matters (runtime/recipe/objective.py): its objective's last and
        # best values, the metrics its progress line shows, its validate() if it has one.
        self.objective = objective.Tracker(objective.of(recipe_cls))
        self.progress = objective.progress_names(recipe_cls)
        self.validates = callable(getattr(recipe_cls, "validate", None))
        self.history: history.History | None = None  # rank 0, while the loop runs

    @property
    def step(self) -> int:
        """Updates done."""
        return self.state.step

    @property
    def resumed_from(self) -> int | None:
        return self.state.resumed_from

    @property
    def unsaved(self) -> bool:
        return self.state.unsaved

    # -- stage 2 -------------------------------------------------------------------------

    def prepare(self, resume: bool, skip: Collection[int] = ()) -> None:
        """Stage 2: place on the device (unless a GPU snapshot already holds it), then resume.

        Raises LoadFailed when a load changed this loop's recipe and failed: it cannot be used."""
        if self.acc is None:
            self.place()
        self.restore(resume, skip)

    def place(self) -> None:
        """The Accelerator and `recipe.setup`: device placement and `accelerator.prepare`."""
        import torch

        from launcher.runtime.train.accelerator import Accelerator

        self.ctx.logs.local_root.mkdir(parents=True, exist_ok=True)
        self.acc = Accelerator(
            mixed_precision=self.spec.train.mixed_precision,
            gradient_accumulation_steps=self.spec.train.gradient_accumulation_steps,
            log_with=trackers.log_with(self.spec.train.tracker, self.ctx.logs),
            project_dir=str(self.ctx.logs.local_root),
            cpu=not torch.cuda.is_available(),
        )
        if self.ctx.folders is not None:
            # Where prepare's data is: read in setup (after the volume reload), never in stage 1.
            self.ctx.recipe.data_dir = self.ctx.folders.data
        self.ctx.recipe.setup(self.acc)
        self._checkpoints = checkpointer(self.ctx, self.acc)
        events.log(f"accelerator ready: {self.acc.device}, {self.acc.num_processes} process(es), "
                   f"mixed precision {self.acc.mixed_precision}")

    def restore(self, resume: bool, skip: Collection[int] = ()) -> None:
        """The newest loadable checkpoint (which depends on the volume: never snapshotted)."""
        if self.ctx.folders is not None and self.spec.stage("prepare") is not None:
            self.checkpoints.use_data(stages.data_digest(self.ctx.folders))
        step = 0
        if resume_policy.resumes(resume, self.spec.checkpoint.resume):
            step = self._resume(skip)
        else:
            events.log("checkpoint.resume is never: starting fresh" if resume else
                       "starting fresh, as asked")
        self.state.loaded(step)

    @property
    def checkpoints(self) -> Checkpointer:
        assert self._checkpoints is not None, "place() makes the checkpoint manager"
        return self._checkpoints

    def close(self) -> None:
        """No more saves from this loop: the ones pending finish first."""
        if self._checkpoints is not None:
            self._checkpoints.close()

    def release(self) -> None:
        """Before a rebuild on a warm container: close, then free what is held on the device."""
        self.close()
        if self.acc is not None:
            self.acc.free_memory()

    def _resume(self, skip: Collection[int] = ()) -> int:
        """The step of the checkpoint loaded (0: none)."""
        try:
            restored = self.checkpoints.resume(skip)
        except LoadFailed:
            self.state.broke()  # half loaded: never saved, never trained; the session rebuilds
            raise
        if restored.step:
            self.objective.restore(restored.extra.get("objective"))
        return restored.step

    def catch_up(self) -> None:
        """On a warm container: load the volume's newest checkpoint if it is not what we hold."""
        newest = self.checkpoints.newest_step()
        if resume_policy.resumes(True, self.spec.checkpoint.resume) and newest is not None \
                and newest != self.step:
            self.state.caught_up(self._resume())

    # -- the loop --------------------------------------------------------------------------

    def run(self, total: int, result_file: Path | None = None) -> dict[str, Any]:
        self.state.started()
        # Trackers are open only while the loop runs: Modal's volume.reload() refuses to run
        # while files are open, and a warm container reloads before its next call.
        trackers.start(self.acc, self.spec, self.ctx.logs)
        if self.acc.is_main_process:
            self.history = history.History(self.ctx.logs.folder, self.ctx.logs.mirror, self.step)
        if self.spec.checkpoint.keep_best and self.objective.objective is None:
            events.log(f"warning: checkpoint.keep_best is {self.spec.checkpoint.keep_best}, but "
                       f"{type(self.ctx.recipe).__name__} declares no objective: only keep_last "
                       "applies (see launcher/runtime/recipe/protocol.py)")
        try:
            with checks.first_update_pending(lambda: f"in update {self.step + 1} of {total}",
                                             type(self.ctx.recipe), lambda: self.updates == 0):
                return self._run(total, result_file)
        except Preempted:
            raise
        except BaseException:
            self.state.broke()  # mid-update state is not a consistent checkpoint
            self._settle()
            raise
        finally:
            self.acc.end_training()

    def _settle(self) -> None:
        """The loop failed: a checkpoint still being written in the background is finished
        (committed, or its own failure logged) before the failure goes up, so nothing writes
        or commits the volume behind the caller's back (it may release the job's lease next)."""
        if self._checkpoints is None:
            return
        try:
            self._checkpoints.wait()
        except Exception as exc:
            events.log(f"warning: the checkpoint being written when the run failed was not "
                       f"committed: {exc}")

    def _run(self, total: int, result_file: Path | None) -> dict[str, Any]:
        start = time.perf_counter()
        first_env_steps = None
        start_step = self.step
        stop = StopFlag()
        with stop:
            while self.step < total:
                first = start_step == self.step
                if first:
                    timeline.mark("first_step")
                metrics = self._update(total)
                if first:
                    timeline.mark("first_step_done")
                if self.step == total:
                    timeline.mark("last_step_done")
                env_steps = metrics.get("env_steps")
                first_env_steps = env_steps if first_env_steps is None else first_env_steps
                validated = self._validate_due(total) and self._validate()
                if validated or self.step % self.spec.train.log_every == 0 or self.step == total:
                    self._log({**metrics, **(validated or {})}, start, first_env_steps)
                signalled, time_due, asked = self._agree(stop.requested is not None, self._time_due(),
                                                         self._stop_asked())
                stop_now = signalled or asked
                every = self.spec.checkpoint.every_steps
                if (every and self.step % every == 0) or time_due or stop_now or self.step == total:
                    self.save()
                if asked and not signalled:  # `launch stop`: the run ends here, not retried
                    events.log(f"stopped as asked (launch stop) after update {self.step} of {total}; "
                               "checkpoint committed")
                    return self._finish("stopped", start, result_file)
                if stop_now:
                    self._finish("preempted", start, result_file)
                    raise Preempted(f"stopped on {stop.requested or 'a signal to another rank'} "
                                    f"after update {self.step} of {total}; checkpoint committed")
        return self._finish("finished", start, result_file)

    def _update(self, total: int) -> dict[str, float]:
        update = self.step + 1
        metrics = checks.metrics(self.ctx.recipe, self.ctx.recipe.train_step(self.step), update)
        self.state.step = update
        self.updates += 1
        faults.point("step", self.step)
        for key, value in metrics.items():
            if not math.isfinite(value):
                self.state.broke()  # never checkpoint a diverged model
                raise PermanentError(f"{key} became {value} in update {update} of {total} "
                                     f"(train_step({update - 1})): training diverged (lower the "
                                     "learning rate, or check the recipe)")
        self.last_metrics = {**self.last_metrics, **metrics}
        self.objective.see(metrics, update)
        return metrics

    def _validate_due(self, total: int) -> bool:
        every = self.spec.train.validate_every
        return self.validates and (self.step == total or bool(every) and self.step % every == 0)

    def _validate(self) -> dict[str, float]:
        """`recipe.validate()` on every process; its metrics averaged across processes."""
        recipe = self.ctx.recipe
        returned = checks.metrics(recipe, recipe.validate(), self.step, "validate")
        if self.acc.num_processes > 1:
            from accelerate.utils import gather_object

            every = gather_object([returned])  # any names, in any order, on each process
            returned = {k: sum(m[k] for m in every if k in m) / sum(k in m for m in every)
                        for k in dict.fromkeys(k for m in every for k in m)}
        self.last_metrics = {**self.last_metrics, **returned}
        self.objective.see(returned, self.step)
        return returned or {}

    def _log(self, metrics: dict[str, float], start: float, first_env_steps: float | None) -> None:
        """Trackers, the metrics history, the supervisor's event, the progress line."""
        logged = dict(metrics)
        speed = ""
        if "env_steps" in metrics:  # a recipe that steps environments: their throughput
            elapsed = max(time.perf_counter() - start, 1e-9)
            done = (metrics["env_steps"] - (first_env_steps or 0.0)) * self.acc.num_processes
            logged["sps"] = done / elapsed
            speed = f", {logged['sps']:,.0f} env-steps/s"
        self.acc.log(logged, step=self.step)
        if self.history is not None:
            self.history.append(self.step, metrics)
        # The metrics flat beside the event's own fields (which win over a metric of their name).
        events.emit("metrics", **{**logged, "step": self.step, "total": self.spec.train.steps,
                                  "objective": self.objective.record()})
        shown = objective.progress_line(metrics, self.objective, self.progress)
        events.log(f"update {self.step} of {self.spec.train.steps}: {shown}{speed}")

    def _time_due(self) -> bool:
        every = self.spec.checkpoint.every_s
        return bool(every) and time.monotonic() - self.last_save >= every

    def _stop_asked(self) -> bool:
        """A stop request for this run (`launch stop`, runtime/control/stop.py)."""
        return self.ctx.stops is not None and self.ctx.stops.requested() is not None

    def _agree(self, stop: bool, time_due: bool, asked: bool = False) -> tuple[bool, bool, bool]:
        """All ranks stop and checkpoint together, if any one of them asks to."""
        if self.acc.num_processes == 1:
            return stop, time_due, asked
        import torch

        flags = torch.tensor([float(stop), float(time_due), float(asked)], device=self.acc.device)
        flags = self.acc.reduce(flags, reduction="sum")
        return bool(flags[0] > 0), bool(flags[1] > 0), bool(flags[2] > 0)

    def save(self) -> None:
        """Checkpoint the current step through the manager (also the exit hook's safety net)."""
        record = self.objective.record()
        self.checkpoints.save(self.step, {} if record is None else {"objective": record})
        self.state.saved()
        self.last_save = time.monotonic()

    # -- results -----------------------------------------------------------------------------

    def _finish(self, status: str, start: float, result_file: Path | None) -> dict[str, Any]:
        """The run's result, once every checkpoint it asked for is committed."""
        self.checkpoints.wait()
        timeline.mark("committed")
        result = self.summary(status, time.perf_counter() - start)
        if result_file is not None and self.acc.is_main_process:
            results.write(result_file, result)
        events.emit("result", **result)
        timeline.mark("result")
        return result

    def summary(self, status: str, seconds: float) -> dict[str, Any]:
        save_seconds = self.checkpoints.seconds
        train_seconds = max(seconds - save_seconds, 1e-9)
        return {
            "status": status, "steps": self.step, "resumed_from": self.resumed_from,
            "seconds": round(seconds, 3), "checkpoint_seconds": round(save_seconds, 3),
            "checkpoint_overhead_pct": round(100 * save_seconds / train_seconds, 3),
            "checkpoints_written": self.checkpoints.written,
            "checkpoints_in_background": self.checkpoints.background,
            "objective": self.objective.record(),
            "stage_seconds": dict(self.ctx.times), "processes": self.acc.num_processes,
            "metrics": self.last_metrics,
        }
