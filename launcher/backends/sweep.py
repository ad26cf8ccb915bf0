"""A sweep here: the coordinator in this process, each trial a local run of the job.

`LocalTrials` is the coordinator's `TrialRunner` on this machine: a trial is the job with its
parameters applied (as `--set` applies them) under the name `<name>-tNNN`, run by a supervisor
as `launch JOB --local` runs a job (its own job folder, lock, lease, retries, checkpoints). The
supervisor watches the worker's metrics events: each is a report to the coordinator, and a
pruned trial is stopped as Ctrl-C stops a run (SIGINT to the worker: a final checkpoint, then
the attempt ends), which is also how a graceful `launch stop` reaches a local run.

A pipeline's `prepare` runs once, in the sweep's own job folder; each trial's folder gets that
data (hard links: files on the volume are never rewritten in place) with prepare's result, so
its train reads it as a pipeline's train does. `evaluate` runs once, on the best trial.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from launcher.backends.local import Display, Options, Supervisor, folders
from launcher.backends.snapshot.client import Snapshots
from launcher.codesource import CodeSource
from launcher.render import render
from launcher.runtime.events import PREFIX
from launcher.runtime.pipeline import stages
from launcher.runtime.pipeline.stages import StageFolders
from launcher.runtime.sweep.coordinator import TrialEnd, TrialRun
from launcher.spec.model import JobSpec
from launcher.spec.sweep import with_params
from launcher.spec.validate import check
from launcher.spec.yamlpos import Document

NOT_METRICS = ("event", "step", "total", "sps")


class TrialSupervisor(Supervisor):
    """A supervisor whose worker's metrics go to the coordinator; its lines carry the trial."""

    def __init__(self, *args: Any, report: Callable[[int, dict[str, float]], bool], tag: str,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.report, self.tag = report, tag
        self.pruned = False

    def final_status(self, code: int) -> str:
        return "pruned" if self.pruned else super().final_status(code)

    def handle(self, line: str, attempt: Any, display: Display) -> None:
        if not line.startswith(PREFIX):
            display.line(f"[{self.tag}] {line}")
            return
        event = json.loads(line[len(PREFIX):])
        if event.get("event") == "metrics":
            metrics = {k: float(v) for k, v in event.items()
                       if k not in NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)}
            if self.report(int(event["step"]), metrics):
                self.pruned = True
                self.stop(signal.SIGINT)  # graceful: the worker checkpoints, then ends
        super().handle(line, attempt, display)


def _link_tree(source: Path, dest: Path) -> None:
    shutil.copytree(source, dest, copy_function=os.link, dirs_exist_ok=True)


class LocalTrials:
    def __init__(self, job: Document, spec: JobSpec, source: str, repo_root: Path,
                 options: Options, objective: tuple[str, str] = ("", "min")) -> None:
        """`job`: the sweep spec's document without `sweep:`; `spec`: that job, validated;
        `objective`: the sweep's (metric, direction)."""
        self.job, self.spec, self.source, self.repo_root = job, spec, source, repo_root
        self.options = options
        self.volumes = folders(spec, repo_root, options)[1]
        self.volume = self.volumes / spec.checkpoint.volume
        self.running: dict[int, Supervisor] = {}
        self.metric, self.direction = objective  # the sweep's, named in each trial's run record
        self.lock = threading.Lock()

    def trial_spec(self, job: str, params: dict[str, Any]) -> JobSpec:
        return check(with_params(self.job, {**params, "name": job})).spec

    def _supervise(self, spec: JobSpec, stage: str, **kwargs: Any) -> tuple[Supervisor, int]:
        run_dir, volumes = folders(spec, self.repo_root, self.options)
        options = replace(self.options, snapshots=Snapshots(), preempt_after=None, resume=True)
        number = kwargs.pop("number", None)
        trial = kwargs.pop("trial", None)
        record = None
        if trial is not None:  # a trial is a run in the registry that names its sweep
            from launcher.backends.runinfo import local_record

            record = local_record(spec, self.source, self.repo_root, run_dir)
            record[0].sweep = {"name": self.spec.name, "trial": trial.number, "params": trial.params,
                               "metric": self.metric, "direction": self.direction}
            kwargs["run_id"] = record[0].run
        cls = TrialSupervisor if "report" in kwargs else Supervisor
        sup = cls(spec, run_dir / f"app-{stage}.py", run_dir, volumes, options, stage=stage,
                  inputs_root=self.repo_root, **kwargs)
        if number is not None:
            with self.lock:
                self.running[number] = sup
        try:
            return sup, sup.run(render(spec, self.source, CodeSource("local")), record)
        finally:
            options.snapshots.close()

    def prepare(self, log: Callable[[str], None]) -> bool:
        """The pipeline's prepare, once for the sweep, in the sweep's folder; True when its data
        is there (run now, or earlier with the same inputs)."""
        if self.spec.stage("prepare") is None:
            return True
        found = StageFolders(self.volume, self.spec.name)
        done = stages.read_result(found, "prepare")
        want = stages.digest(stages.inputs(self.spec, "prepare", None, self.repo_root))
        if done is not None and done.get("digest") == want:
            log(f"prepare: finished earlier with the same inputs (digest {want[:12]}); its data serves every trial")
            return True
        log("prepare: running once for the sweep")
        _, code = self._supervise(self.spec, "prepare")
        return code == 0

    def _seed(self, job: str) -> None:
        """The trial's job folder gets the sweep's prepared data and prepare's result."""
        if self.spec.stage("prepare") is None:
            return
        ours, theirs = StageFolders(self.volume, self.spec.name), StageFolders(self.volume, job)
        if stages.read_result(theirs, "prepare") is not None:
            return  # seeded before a restart
        _link_tree(ours.data, theirs.data)
        theirs.stage("prepare").mkdir(parents=True, exist_ok=True)
        for file in (ours.result("prepare"), ours.marker("prepare")):
            shutil.copyfile(file, theirs.stage("prepare") / file.name)

    def run(self, trial: TrialRun) -> TrialEnd:
        spec = self.trial_spec(trial.job, trial.params)
        self._seed(trial.job)
        record = self.volume / trial.job / "trial.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"sweep": self.spec.name, "trial": trial.number,
                                      "params": trial.params, "seed": spec.train.seed}, indent=2))
        try:
            sup, code = self._supervise(spec, "train", report=trial.report, tag=f"t{trial.number:03d}",
                                        number=trial.number, trial=trial)
        finally:
            with self.lock:
                self.running.pop(trial.number, None)
        if sup.interrupted:
            return TrialEnd("stopped")
        return TrialEnd("finished") if code == 0 else TrialEnd("failed", sup.attempts[-1].message)

    def stop(self, number: int) -> None:
        with self.lock:
            sup = self.running.get(number)
        if sup is not None:
            sup.stop(signal.SIGINT)

    def evaluate(self, job: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """The pipeline's evaluate, once, on the best trial; its result (None: no evaluate)."""
        if self.spec.stage("evaluate") is None:
            return None
        sup, _ = self._supervise(self.trial_spec(job, params), "evaluate")
        final = sup.attempts[-1]
        return {**final.result, "status": final.outcome, "error": final.message}
