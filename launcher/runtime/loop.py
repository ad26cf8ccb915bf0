"""One training process: Accelerator, resume, the update loop, checkpoints and commits."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.runtime import checkpoint, events, faults
from launcher.runtime.failures import PermanentError, Preempted
from launcher.runtime.signals import StopFlag

if TYPE_CHECKING:
    from launcher.runtime.session import Session

RETURN_KEY = "return_mean100"  # the recipe metric the summary reports as "return"


def _to_cpu(value: Any) -> Any:
    if hasattr(value, "detach"):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


class Loop:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.spec = session.spec
        self.acc: Any = None
        self.step = 0
        self.saved_step: int | None = None
        self.resumed_from: int | None = None
        self.used = False
        self.failed = False
        self.checkpoints_written = 0
        self.save_seconds = 0.0
        self.last_save = time.monotonic()
        self.last_metrics: dict[str, float] = {}
        self.best_return: float | None = None

    # -- stage 2 -------------------------------------------------------------------------

    def prepare(self, resume: bool) -> None:
        """Stage 2: place on the device (unless a GPU snapshot already holds it), then resume."""
        if self.acc is None:
            self.place()
        self.restore(resume)

    def place(self) -> None:
        """The Accelerator and `recipe.setup`: device placement and `accelerator.prepare`."""
        import torch
        from accelerate import Accelerator

        tracker = self.spec.train.tracker
        if tracker == "wandb" and importlib.util.find_spec("wandb") is None:
            raise PermanentError("train.tracker is wandb, but wandb is not installed in the image; "
                                 "add it to the Dockerfile or use tensorboard")
        self.session.run_dir.mkdir(parents=True, exist_ok=True)
        self.acc = Accelerator(
            mixed_precision=self.spec.train.mixed_precision,
            gradient_accumulation_steps=self.spec.train.gradient_accumulation_steps,
            log_with=None if tracker == "none" else tracker,
            project_dir=str(self.session.run_dir),
            cpu=not torch.cuda.is_available(),
        )
        self.session.recipe.setup(self.acc)
        events.log(f"accelerator ready: {self.acc.device}, {self.acc.num_processes} process(es), "
                   f"mixed precision {self.acc.mixed_precision}")

    def restore(self, resume: bool) -> None:
        """The newest loadable checkpoint (which depends on the volume: never snapshotted)."""
        if resume and self.spec.checkpoint.resume == "auto":
            self.step = self._resume()
        else:
            events.log("checkpoint.resume is never: starting fresh" if resume else
                       "starting fresh, as asked")
        self.resumed_from = self.step or None
        self.saved_step = self.step if self.step else None

    def release(self) -> None:
        """Before a rebuild on a warm container: free what this loop holds on the device."""
        if self.acc is not None:
            self.acc.free_memory()

    def _hparams(self) -> dict[str, Any]:
        train = self.spec.train
        flat = {"steps": train.steps, "seed": train.seed, "mixed_precision": train.mixed_precision,
                **{f"config.{k}": v for k, v in train.config.items()}}
        return {k: v for k, v in flat.items() if isinstance(v, (int, float, str, bool))}

    @property
    def rank(self) -> int:
        return self.acc.process_index

    @property
    def on_node0(self) -> bool:
        return self.acc.process_index == self.acc.local_process_index

    def model_config(self) -> dict[str, Any]:
        """The config fields that shape the model, defaults filled from the recipe's schema."""
        recipe = type(self.session.recipe)
        props = getattr(recipe, "config_schema", {}).get("properties", {})
        config = self.spec.train.config
        return {k: config.get(k, props.get(k, {}).get("default"))
                for k in getattr(recipe, "model_fields", ())}

    def _check_compatible(self, path: Path) -> None:
        manifest = json.loads((path / checkpoint.MANIFEST).read_text())
        saved = manifest.get("extra", {}).get("model_config", {})
        current = json.loads(json.dumps(self.model_config()))
        changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if changed:
            what = "; ".join(f"train.config.{k} was {saved.get(k)!r}, now {current.get(k)!r}"
                             for k in changed)
            raise checkpoint.Incompatible(
                f"cannot resume from {path.name}: the model changed ({what}); set "
                "checkpoint.resume: never, or use another checkpoint.volume")

    def _load(self, path: Path) -> None:
        import torch

        self._check_compatible(path)
        manifest = json.loads((path / checkpoint.MANIFEST).read_text())
        self.best_return = manifest.get("extra", {}).get("best_return")
        self.acc.load_state(str(path))
        mine = path / f"recipe-{self.rank}.pt"
        state = torch.load(mine if mine.is_file() else path / "recipe-0.pt", weights_only=True)
        self.session.recipe.load_state_dict(state)

    def _resume(self) -> int:
        root, warn = self.session.root, (lambda m: events.log(f"warning: {m}"))
        try:
            if self.acc.num_processes == 1:
                found = checkpoint.latest_loadable(root, load=self._load, warn=warn)
                step = found.step if found else 0
            else:
                step = self._resume_together(root, warn)
        except checkpoint.Incompatible as exc:
            raise PermanentError(str(exc)) from exc
        events.log(f"resumed from step {step}" if step else "no checkpoint: starting fresh")
        return step

    def catch_up(self) -> None:
        """On a warm container: load the volume's newest checkpoint if it is not what we hold."""
        newest = checkpoint.complete(self.session.root)
        if self.spec.checkpoint.resume == "auto" and newest and newest[0].step != self.step:
            self.step = self._resume()
            self.saved_step = self.resumed_from = self.step

    def _resume_together(self, root: Path, warn: Any) -> int:
        """Global rank 0 picks the checkpoint (verified); every rank loads that same one."""
        from accelerate.utils import broadcast_object_list

        choice: list[Any] = [None, 0]
        if self.acc.is_main_process:
            found = checkpoint.latest_loadable(root, load=self._check_compatible, warn=warn)
            choice = [str(found.path), found.step] if found else [None, 0]
        broadcast_object_list(choice)
        if choice[0]:
            self._load(Path(choice[0]))
        return int(choice[1])

    # -- the loop --------------------------------------------------------------------------

    @property
    def unsaved(self) -> bool:
        return self.used and not self.failed and self.saved_step != self.step

    def run(self, total: int, result_file: Path | None = None) -> dict[str, Any]:
        self.used = True
        # Trackers are open only while the loop runs: Modal's volume.reload() refuses to run
        # while files are open, and a warm container reloads before its next call.
        if self.spec.train.tracker != "none":
            self.acc.init_trackers(self.spec.name, config=self._hparams())
        try:
            return self._run(total, result_file)
        except Preempted:
            raise
        except BaseException:
            self.failed = True  # mid-update state is not a consistent checkpoint
            raise
        finally:
            self.acc.end_training()

    def _run(self, total: int, result_file: Path | None) -> dict[str, Any]:
        start = time.perf_counter()
        first_env_steps = None
        stop = StopFlag()
        with stop:
            while self.step < total:
                metrics = self._update()
                env_steps = metrics.get("env_steps")
                first_env_steps = env_steps if first_env_steps is None else first_env_steps
                if self.step % self.spec.train.log_every == 0 or self.step == total:
                    self._log(metrics, start, first_env_steps)
                stop_now, time_due = self._agree(stop.requested is not None, self._time_due())
                every = self.spec.checkpoint.every_steps
                if (every and self.step % every == 0) or time_due or stop_now or self.step == total:
                    self.save()
                if stop_now:
                    result = self.summary("preempted", time.perf_counter() - start)
                    self._write_result(result, result_file)
                    raise Preempted(f"stopped on {stop.requested or 'a signal to another rank'} "
                                    f"at step {self.step}; checkpoint committed")
        result = self.summary("finished", time.perf_counter() - start)
        self._write_result(result, result_file)
        return result

    def _update(self) -> dict[str, float]:
        metrics = {k: float(v) for k, v in self.session.recipe.train_step(self.step).items()}
        self.step += 1
        faults.point("step", self.step)
        for key, value in metrics.items():
            if not math.isfinite(value):
                self.failed = True  # never checkpoint a diverged model
                raise PermanentError(f"{key} became {value} at step {self.step}: training diverged "
                                     "(lower the learning rate, or check the recipe)")
        self.last_metrics = metrics
        if RETURN_KEY in metrics and metrics.get("episodes", 1) > 0:
            seen = metrics[RETURN_KEY]
            self.best_return = seen if self.best_return is None else max(self.best_return, seen)
        return metrics

    def _log(self, metrics: dict[str, float], start: float, first_env_steps: float | None) -> None:
        elapsed = max(time.perf_counter() - start, 1e-9)
        done = (metrics.get("env_steps", 0.0) - (first_env_steps or 0.0)) * self.acc.num_processes
        sps = done / elapsed
        self.acc.log({**metrics, "sps": sps}, step=self.step)
        events.emit("metrics", step=self.step, total=self.spec.train.steps, sps=sps, **metrics)
        ret = f", return {metrics[RETURN_KEY]:.1f}" if RETURN_KEY in metrics else ""
        speed = f", {sps:,.0f} env-steps/s" if "env_steps" in metrics else ""
        events.log(f"step {self.step}: loss {metrics.get('loss', float('nan')):.4f}{ret}{speed}")

    def _time_due(self) -> bool:
        every = self.spec.checkpoint.every_s
        return bool(every) and time.monotonic() - self.last_save >= every

    def _agree(self, stop: bool, time_due: bool) -> tuple[bool, bool]:
        """All ranks stop and checkpoint together, if any one of them asks to."""
        if self.acc.num_processes == 1:
            return stop, time_due
        import torch

        flags = torch.tensor([float(stop), float(time_due)], device=self.acc.device)
        flags = self.acc.reduce(flags, reduction="sum")
        return bool(flags[0] > 0), bool(flags[1] > 0)

    # -- checkpoints -------------------------------------------------------------------------

    def save(self) -> None:
        started = time.perf_counter()
        states = [_to_cpu(self.session.recipe.state_dict())]
        if self.acc.num_processes == 1:
            self._publish(lambda tmp: self._write(tmp, states))
        else:
            self._save_together(states)
        self.saved_step = self.step
        self.last_save = time.monotonic()
        self.checkpoints_written += 1
        self.save_seconds += time.perf_counter() - started
        events.emit("checkpoint", step=self.step, seconds=time.perf_counter() - started)

    def _write(self, folder: Path, states: list[Any]) -> None:
        import torch

        self.acc.save_state(str(folder))
        for rank, state in enumerate(states):
            torch.save(state, folder / f"recipe-{rank}.pt")
        faults.point("written")

    def _publish(self, write: Any) -> None:
        """Global rank 0 alone: write under a temp name, publish atomically, commit, then
        apply retention (so a failed deletion never costs the new checkpoint)."""
        root = self.session.root
        checkpoint.save(root, self.step, write, spec_hash=self.spec.hash,
                        extra={"model_config": self.model_config(), "world_size": self.acc.num_processes,
                               "best_return": self.best_return})
        faults.point("published")
        self.session.mirror_logs()
        self.session.commit()
        faults.point("committed")
        try:
            checkpoint.retain(root, self.step, self.spec.checkpoint.keep_last)
        except checkpoint.CheckpointError as exc:
            events.log(f"warning: {exc}")

    def _save_together(self, states: list[Any]) -> None:
        """Every rank adds its part to one staging folder, then global rank 0 publishes it alone.

        The collectives all come first and every rank reaches each of them, so a failure on
        rank 0 while publishing cannot leave the others waiting: it is broadcast, and all raise.
        """
        from accelerate.utils import broadcast_object_list, gather_object

        states = gather_object(states)
        where: list[Any] = [None]
        if self.acc.is_main_process:
            with contextlib.suppress(OSError):  # a full disk: None tells every rank
                self.session.root.mkdir(parents=True, exist_ok=True)
                where[0] = tempfile.mkdtemp(prefix=f".tmp-stage-{self.step:08d}-", dir=self.session.root)
        broadcast_object_list(where)
        if where[0] is None:
            raise checkpoint.CheckpointError(f"checkpoint at step {self.step} not written: cannot "
                                             "create a staging folder; earlier checkpoints are intact")
        stage = Path(where[0]) if self.on_node0 else Path(tempfile.mkdtemp(prefix="launch-scratch-"))
        self.acc.save_state(str(stage))  # node 0's ranks add their RNG state; others' is scratch
        self.acc.wait_for_everyone()
        outcome: list[Any] = [None]
        if self.acc.is_main_process:
            try:
                self._publish(lambda tmp: self._move_in(stage, tmp, states))
            except Exception as exc:
                outcome[0] = str(exc)
        if not self.on_node0:
            shutil.rmtree(stage, ignore_errors=True)
        broadcast_object_list(outcome)
        if outcome[0] is not None:
            raise checkpoint.CheckpointError(outcome[0])

    def _move_in(self, stage: Path, tmp: Path, states: list[Any]) -> None:
        import torch

        for item in stage.iterdir():
            os.replace(item, tmp / item.name)
        stage.rmdir()
        for rank, state in enumerate(states):
            torch.save(state, tmp / f"recipe-{rank}.pt")
        faults.point("written")

    # -- results -----------------------------------------------------------------------------

    def summary(self, status: str, seconds: float) -> dict[str, Any]:
        train_seconds = max(seconds - self.save_seconds, 1e-9)
        return {
            "status": status, "steps": self.step, "resumed_from": self.resumed_from,
            "seconds": round(seconds, 3), "checkpoint_seconds": round(self.save_seconds, 3),
            "checkpoint_overhead_pct": round(100 * self.save_seconds / train_seconds, 3),
            "checkpoints_written": self.checkpoints_written,
            "last_return": self.last_metrics.get(RETURN_KEY), "best_return": self.best_return,
            "episodes": self.last_metrics.get("episodes"),
            "stage_seconds": dict(self.session.times), "processes": self.acc.num_processes,
        }

    def _write_result(self, result: dict[str, Any], result_file: Path | None) -> None:
        if result_file is not None and self.acc.is_main_process:
            result_file.parent.mkdir(parents=True, exist_ok=True)
            result_file.write_text(json.dumps(result, indent=2, sort_keys=True))
        events.emit("result", **result)

    @staticmethod
    def read_result(path: Path) -> dict[str, Any]:
        return json.loads(path.read_text()) if path.is_file() else {}
