"""The long reliability run: spec fuzzing, every kill point of a job, and drills of jobs sharing
a volume.

Run: python bench/faults.py [--fuzz N] [--steps S --every E] [--no-kills] [--no-drills]
                           [--no-driver-drills] [--no-stage-drills] [--no-checkpoint-drills]
                           [--no-volume-drills]

Fuzz: cases of tests/test_fuzz.py (mutated specs, wild free text, random YAML and bytes)
through `launch check` and, for a quarter, `launch --dry-run`, in-process; each distinct input
once (a repeated draw is counted, not run again). Each must end in exit 0, or exit 1 with
location-first messages only.

Kills: every kill point of an S-update job that checkpoints every E updates (each point of
launcher/runtime/faults.py at each of its indexes: stage boundaries, the lease, every update,
each checkpoint's written / published / committed phases, the end), each once, through a real
`launch --local` process. Each run must complete through its retries, resume from the newest
committed checkpoint (resuming from anything else is a wrong load), end with the parameters of
an uninterrupted run bit for bit, keep every checkpoint it should (a missing one is lost), and
redo at most one commit interval.

Drills, through real `launch --local` processes on one volume:
- two jobs at once: both finish, each with its own checkpoints, parameters as if alone; then
  one resumes from its own newest checkpoint;
- two runs of one job: the second is refused while the first runs; the first is then killed
  with SIGKILL (its worker must die with it); a third run resumes from the first's newest
  committed checkpoint and ends as an uninterrupted run would.

Driver drills, the pipeline's driver owning the run:
- on Modal, replayed through the generated app's `pipeline` and Modal's own client objects with
  fakes at the SDK boundary (spawn, FunctionCall.from_id/get, current_function_call_id, Volume
  commit/reload): the driver preempted while it waits for each stage, then restarted on the same
  input, must make no second call of any stage and run the pipeline to its end; a second launch
  during each stage must be refused; the driver's timeout must cover every stage attempt's
  start-up limit and timeout, as Modal reads them from each example app;
- locally, through real `launch --local` processes: a second launch while the first is in
  prepare or in evaluate is refused, the driver holding the job's lease meanwhile; a launch after
  the first was stopped finishes.

Stage drills (`--no-stage-drills` skips them), through real `launch` processes: a prepare that
fails after writing its data (its volume committed), then a plain rerun; a rerun that changes
only prepare's retries, compute and timeouts (it must not run prepare, nor rewrite train's
result); a changed input file, then `--rerun prepare` after another change (train must refuse
the old checkpoints each time, pointing to --fresh); a token in the git origin's query; a
Dockerfile outside the repository; `extends:` of a file that is no spec. Escapes: wrong stage
data, leaked tokens or file contents, unlocated errors, exit 3.

Checkpoint drills, through real `launch --local` processes: `checkpoint.resume: never` after a
longer run (every earlier checkpoint set aside byte for byte, none overwritten) and in a pipeline
(evaluate reads this run's checkpoint); recipe state a weights-only load refuses (refused at the
first save; an older launcher's checkpoints of it stop the run and stay); manifests nested too deep
or with `extra` fields of the wrong type (skipped with a warning); changed `train.*` settings
(reported); a recipe drawing from Python's `random` in two processes (two runs and a resumed one
bit-identical).

Volume drills, through real `launch --local` processes: the working copies (`@work`) or the
locks (`@locks`, then the job launched again) removed during a run with another job on the
volume; `checkpoint.volume` '..' and '.'; a job folder and a leftover that are links out of the
volume; a read-only volumes folder, a volume on another filesystem and a full disk (in prepare,
at a checkpoint) on real mounts in a private mount namespace where the machine allows one.
Nothing of another job's may be lost, no exit 3, no traceback, no torch internals, no partial
file left on the volume, and a storage failure spends one attempt.

Prints counts and every escape; exits 1 if there was any.
"""

from __future__ import annotations

import argparse
import collections
import io
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "fault")]

RUN_TIMEOUT_S = 600  # per launch: a hang guard; a clean run takes ~15 s


def _kind(escape: str) -> str:
    for word, kind in (("hang", "hangs"), ("traceback", "tracebacks"), ("exit 3", "exit 3"),
                       ("not location first", "unlocated"), ("does not render", "check/render mismatch")):
        if word in escape:
            return kind
    return "other"


def fuzz(count: int) -> int:
    from hypothesis import given, settings

    import test_fuzz

    kinds: collections.Counter[str] = collections.Counter()
    codes: collections.Counter[str] = collections.Counter()
    seen: set[test_fuzz.Case] = set()
    draws = 0
    shown: list[str] = []
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as folder, test_fuzz.corpus(Path(folder)) as root:
        @settings(test_fuzz.FUZZ, max_examples=count)
        @given(test_fuzz.cases())
        def sweep(case: test_fuzz.Case) -> None:  # counts every escape; never stops at one
            nonlocal draws
            draws += 1
            if case in seen:
                return
            seen.add(case)
            outcomes = test_fuzz.run_case(case, root)
            for o in outcomes:
                codes[f"{o.args[0]} exit {o.code}"] += 1
            for escape in test_fuzz.escapes(outcomes, case, root):
                kinds[_kind(escape)] += 1
                if len(shown) < 20:
                    shown.append(f"  {escape}\n    case: {case!r:.600}")

        sweep()
    total = sum(kinds.values())
    print(f"fuzz: {len(seen)} distinct inputs ({draws} draws) in {time.monotonic() - start:.1f} s; "
          + ", ".join(f"{k} {v}" for k, v in sorted(codes.items())))
    print(f"fuzz: escapes {total} (" + ", ".join(
        f"{k} {kinds[k]}" for k in ("tracebacks", "exit 3", "hangs", "unlocated",
                                    "check/render mismatch", "other")) + ")")
    for line in shown:
        print(line)
    return total


class Tally:
    """Escapes by kind, shown once each with the output that shows them."""

    KINDS = ("tracebacks", "exit 3", "hangs", "wrong loads", "checkpoints lost", "left over",
             "mismatched final params", "lost more than a commit interval", "other")

    def __init__(self) -> None:
        self.kinds: collections.Counter[str] = collections.Counter()

    def add(self, problems: list[str], output: str) -> None:
        for problem in problems:
            self.kinds[problem] += 1
        if problems:
            print("    " + output[-1500:].replace("\n", "\n    "))

    def line(self, what: str) -> str:
        return f"{what}: escapes {sum(self.kinds.values())} (" + ", ".join(
            f"{k} {self.kinds[k]}" for k in self.KINDS) + ")"

    def report(self, what: str) -> int:
        """Print the tally's line; the number of escapes, which main() adds up."""
        print(self.line(what))
        return sum(self.kinds.values())


def _common(code: int, output: str) -> list[str]:
    problems = ["tracebacks"] if "Traceback" in output else []
    if code == 3:
        problems.append("exit 3")
    return problems


def _final(volume: Path, job: str, steps: int) -> dict | None:
    from statecmp import load_checkpoint

    path = volume / job / f"step-{steps:08d}"
    return load_checkpoint(path) if path.is_dir() else None


def kills(steps: int, every: int) -> int:
    from runjob import checkpoints, launch_local, probe_spec, write_spec
    from statecmp import differences
    from test_kill_anywhere import committed_before, kill_points

    tally = Tally()
    points = kill_points(steps, every)
    spec = probe_spec(steps=steps, checkpoint={"every_steps": every, "keep_last": 3})
    saves = sorted({*range(every, steps + 1, every), steps})
    kept = [f"step-{s:08d}" for s in saves[-3:]]
    redone: list[int] = []
    completed = bit_exact = 0
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        clean = launch_local(write_spec(Path(folder) / "clean", spec), timeout=RUN_TIMEOUT_S)
        reference = _final(clean.volume / "vol", "probe", steps)
        if clean.code != 0 or reference is None:
            print(f"kills: the uninterrupted run failed (exit {clean.code}):\n{clean.output[-2000:]}")
            return 1
        for index, (point, n) in enumerate(points):
            trial = Path(folder) / f"trial-{index}"
            fault = f"kill:{point}:{n}"
            try:
                run = launch_local(write_spec(trial, spec), env={"LAUNCH_FAULT": fault}, timeout=RUN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                tally.add(["hangs"], f"{fault}: no exit within {RUN_TIMEOUT_S} s")
                continue
            problems = _common(run.code, run.output)
            if run.code not in (0, 3):
                problems.append("other")
            completed += run.code == 0
            resumed = committed_before(point, n, steps, every)
            retry = run.output.split("attempt 1: transient", 1)[-1]
            if (f"resumed from step-{resumed:08d}" if resumed else "no checkpoint: starting fresh") not in retry:
                problems.append("wrong loads")
            present = checkpoints(trial / "volumes" / "vol" / "probe")
            if set(kept) - set(present):
                problems.append("checkpoints lost")
            if set(present) - set(kept):
                problems.append("left over")  # retention not applied
            final = _final(trial / "volumes" / "vol", "probe", steps)
            if final is None or differences(final, reference):
                problems.append("mismatched final params")
            else:
                bit_exact += 1
            rows = trial / "probe-rank0.jsonl"
            redone.append(len(rows.read_text().splitlines()) - steps if rows.is_file() else 0)
            if redone[-1] > every:
                problems.append("lost more than a commit interval")
            print(f"  {index + 1:2d}/{len(points)} {fault:22s} exit {run.code}, resumed from "
                  f"{resumed}, redid {redone[-1]} updates: {', '.join(problems) or 'ok'}")
            tally.add(problems, run.output)
    by_point = collections.Counter(p for p, _ in points)
    print(f"kills: {len(points)} distinct points of a {steps}-update job committing every {every} ("
          + ", ".join(f"{p} {c}" for p, c in by_point.items()) + f") in {time.monotonic() - start:.0f} s; "
          f"completed {completed}, bit-identical {bit_exact}; max redone {max(redone, default=0)} "
          f"updates (commit interval {every})")
    return tally.report("kills")


def drills() -> int:
    from runjob import checkpoints, launch_local, probe_spec, write_spec
    from statecmp import differences
    from test_signals import alive, rows, start_launch, wait_for

    tally = Tally()
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        volumes = folder / "volumes"
        # Two jobs at once on one volume, then one of them again.
        slow = {"config": {"delay_s": 0.02}}
        runs = {}
        for name in ("ppo", "ppo-multi-gpu"):
            (folder / name).mkdir()
            runs[name] = start_launch(folder / name, {**probe_spec(steps=30, train=slow), "name": name},
                                      volumes=volumes)
        alone = launch_local(write_spec(folder / "alone", {**probe_spec(steps=30), "name": "ppo"}))
        reference = _final(alone.volume / "vol", "ppo", 30)
        for name, run in runs.items():
            code = run.wait(timeout=RUN_TIMEOUT_S)
            output = (folder / name / "launch.log").read_text()
            problems = _common(code, output) + ([] if code == 0 else ["other"])
            if "no checkpoint: starting fresh" not in output or "resumed from" in output:
                problems.append("wrong loads")
            if checkpoints(volumes / "vol" / name) != ["step-00000024", "step-00000027", "step-00000030"]:
                problems.append("checkpoints lost")
            final = _final(volumes / "vol", name, 30)
            if final is None or reference is None or differences(final, reference):
                problems.append("mismatched final params")
            print(f"  two jobs at once: {name} exit {code}: {', '.join(problems) or 'ok'}")
            tally.add(problems, output)
        again = launch_local(write_spec(folder / "ppo", {**probe_spec(steps=33), "name": "ppo"}),
                             "--volumes-dir", str(volumes))
        problems = _common(again.code, again.output) + ([] if again.code == 0 else ["other"])
        if "resumed from step-00000030 (after update 30 of 33)" not in again.output:
            problems.append("wrong loads")
        if checkpoints(volumes / "vol" / "ppo-multi-gpu") != ["step-00000024", "step-00000027", "step-00000030"]:
            problems.append("checkpoints lost")
        print(f"  two jobs, one resumed: exit {again.code}: {', '.join(problems) or 'ok'}")
        tally.add(problems, again.output)

        # Two runs of one job: the second refused; the first killed (kill -9); a third resumes.
        job = folder / "job"
        job.mkdir()
        first = start_launch(job, probe_spec(steps=400, train={"config": {"delay_s": 0.05}}))
        wait_for("the first run to train", lambda: len(rows(job)) >= 8)
        second = launch_local(job / "job.yaml")
        problems = _common(second.code, second.output)
        if second.code != 1 or len(second.output.splitlines()) != 1 or "already running" not in second.output:
            problems.append("other")
        print(f"  two runs of one job: the second exit {second.code}: {second.output.strip()}")
        tally.add(problems, second.output)
        worker = rows(job)[-1]["pid"]  # one process: the recipe runs in the worker itself
        first.send_signal(signal.SIGKILL)
        first.wait()
        wait_for("the first run's worker to die", lambda: not alive(worker), deadline_s=30)
        committed = checkpoints(job / "volumes" / "vol" / "probe")
        third = launch_local(write_spec(job, probe_spec(steps=400)))
        problems = _common(third.code, third.output) + ([] if third.code == 0 else ["other"])
        newest = committed[-1] if committed else None
        if (f"resumed from {newest} " if newest else "no checkpoint: starting fresh") not in third.output:
            problems.append("wrong loads")
        straight = launch_local(write_spec(folder / "straight", probe_spec(steps=400)))
        final, expected = _final(job / "volumes" / "vol", "probe", 400), _final(straight.volume / "vol", "probe", 400)
        if final is None or expected is None or differences(final, expected):
            problems.append("mismatched final params")
        print(f"  two runs of one job: the first killed (its newest commit {newest}), its worker "
              f"gone; the third exit {third.code}, resumed from {newest}: {', '.join(problems) or 'ok'}")
        tally.add(problems, third.output)
    print(f"drills: two jobs at once on one volume, one resumed; two runs of one job, the first "
          f"killed, a third resumed; in {time.monotonic() - start:.0f} s")
    return tally.report("drills")


class DriverTally(Tally):
    KINDS = ("tracebacks", "exit 3", "hangs", "two runs at once", "stage called twice",
             "stage never run", "driver outlived", "other")


def _modal_restarts(tally: DriverTally, app: object, folder: Path, said: io.StringIO) -> None:
    """The generated driver preempted while it waits for each stage, then restarted."""
    import pytest
    from test_modal_driver import Modal

    for n, stage in enumerate(("prepare", "train", "evaluate")):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("LAUNCH_CHECKPOINT_DIR", str(folder / f"restart-{n}"))
            server = Modal(app, patch, f"fc-driver-{n}")
            server.results = {stage: KeyboardInterrupt()}
            try:
                app.pipeline.local(rerun=[])
            except KeyboardInterrupt:
                pass
            server.results = {}
            out = app.pipeline.local(rerun=[])
        problems = [] if out.get("status") == "finished" else ["stage never run"]
        if len(server.stages) != len(set(server.stages)):
            problems.append("stage called twice")
        print(f"  modal: driver preempted waiting for {stage}, restarted: calls "
              f"{' '.join(server.stages)}; {out.get('status')}: {', '.join(problems) or 'ok'}",
              file=sys.stdout)
        tally.add(problems, said.getvalue() + str(out))


def _modal_second_launches(tally: DriverTally, app: object, folder: Path, said: io.StringIO) -> None:
    """A second launch (another driver call) during each stage of the first."""
    import pytest
    from test_modal_driver import Modal

    for n, stage in enumerate(("prepare", "train", "evaluate")):
        second: list[dict] = []
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("LAUNCH_CHECKPOINT_DIR", str(folder / f"second-{n}"))
            server = Modal(app, patch, "fc-first")

            class LaunchAgain(dict):
                def get(self, running: str, default: object = None) -> object:
                    if running == stage and not second:
                        server.driver_call = "fc-second"
                        second.append(app.pipeline.local(rerun=[]))
                        server.driver_call = "fc-first"
                    return default

            server.results = LaunchAgain()
            app.pipeline.local(rerun=[])
        refused = second and second[0].get("status") == "permanent" and "already running" in second[0]["error"]
        problems = [] if refused and len(server.stages) == 3 else ["two runs at once"]
        print(f"  modal: a second launch during {stage}: "
              f"{second[0].get('status') if second else 'never made'}: {', '.join(problems) or 'ok'}",
              file=sys.stdout)
        tally.add(problems, said.getvalue() + str(second))


def _driver_timeouts(tally: DriverTally) -> None:
    """Every pipeline example's driver outlasts its stages within their start-up and run limits."""
    import pytest
    from test_app_import import PIPELINES, example, import_app

    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        for name in PIPELINES:
            path = Path(tmp) / (name.replace("/", "_").removesuffix(".yaml") + ".py")
            path.write_text(example(name)[1], "utf-8")
            module, _ = import_app(path, patch)
            spec = example(name)[0]
            infos = [getattr(module, cls)._get_class_service_function().info()
                     for cls in ["Trainer", *[s.name.capitalize() for s in spec.stages]]]
            worst = sum((i.startup_timeout + i.timeout) * (1 + i.max_retries) for i in infos)
            timeout = module.pipeline.info().timeout
            problems = [] if timeout >= min(worst, 86400) else ["driver outlived"]
            print(f"  modal: {name}: driver timeout {timeout} s, stages' start-up + run limits "
                  f"{worst} s: {', '.join(problems) or 'ok'}")
            tally.add(problems, name)


def _local_second_launches(tally: DriverTally, folder: Path) -> None:
    """Real `launch --local`: a second launch while the first holds in prepare, then evaluate."""
    import json
    import shutil

    from runjob import RECIPES, launch_local, probe_spec
    from test_signals import start_launch, wait_for

    for stage in ("prepare", "evaluate"):
        job = folder / f"local-{stage}"
        job.mkdir()
        shutil.copy(RECIPES / "probe_stages.py", job / "probe_stages.py")
        spec = probe_spec(steps=6)
        spec["stages"] = {"prepare": {"run": "probe_stages:prepare", "retries": 0},
                          "evaluate": {"run": "probe_stages:evaluate", "retries": 0}}
        spec["stages"][stage]["config"] = {"hold_first_attempt": True}
        first = start_launch(job, spec)
        log = job / "launch.log"
        wait_for(f"the first run to start {stage}", lambda: f"stage {stage}: starting" in log.read_text(),
                 deadline_s=RUN_TIMEOUT_S)
        lease = job / "volumes" / "vol" / "probe" / "lease.json"
        held = lease.is_file() and json.loads(lease.read_text())["call_id"].startswith("local-")
        second = launch_local(job / "job.yaml")
        problems = _common(second.code, second.output)
        if second.code != 1 or "already running" not in second.output or not held:
            problems.append("two runs at once")
        first.send_signal(signal.SIGTERM)
        code = first.wait(timeout=RUN_TIMEOUT_S)
        third = launch_local(job / "job.yaml")
        problems += _common(third.code, third.output) + ([] if code == 143 and third.code == 0 else ["other"])
        print(f"  local: a second launch while the first is in {stage}: exit {second.code}, the "
              f"driver's lease {'held' if held else 'missing'}; the first stopped (exit {code}); "
              f"a third exit {third.code}: {', '.join(problems) or 'ok'}")
        tally.add(problems, second.output + third.output)


def driver_drills() -> int:
    import importlib.util

    import pytest
    from regen_golden import render_case

    tally = DriverTally()
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        folder = Path(tmp)
        patch.setenv("LAUNCH_REPO_ROOT", str(ROOT))
        path = folder / "app.py"
        path.write_text(render_case("pipeline-digits"), "utf-8")
        module_spec = importlib.util.spec_from_file_location("bench_driver_app", path)
        app = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(app)
        import contextlib
        import io
        import warnings
        said = io.StringIO()  # the in-process driver's log lines: shown with an escape only
        with warnings.catch_warnings(), contextlib.redirect_stderr(said):
            warnings.simplefilter("ignore")  # `.local()` runs without the mounted volume: the point
            _modal_restarts(tally, app, folder, said)
            _modal_second_launches(tally, app, folder, said)
        _driver_timeouts(tally)
        _local_second_launches(tally, folder)
    print(f"driver drills: the Modal driver preempted in each stage and restarted, a second launch "
          f"in each stage, the driver's timeout of every pipeline example; a second local launch "
          f"in prepare and in evaluate; in {time.monotonic() - start:.0f} s")
    return tally.report("driver drills")


class StageTally(Tally):
    KINDS = ("tracebacks", "exit 3", "wrong stage data", "leaked tokens", "unlocated", "other")


def _cli(folder: Path, *args: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "launcher.cli", *args], cwd=folder, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)
    return proc.returncode, proc.stdout + proc.stderr


def _stage_data_drills(folder: Path, tally: StageTally) -> None:
    import json

    from runjob import launch_local
    from test_pipeline_local import FRESH, pipeline_spec, ran, volume_rows, with_inputs, write

    def check(what: str, run: Any, wrong: bool, code: int = 0) -> None:
        problems = _common(run.code, run.output) + (["wrong stage data"] if wrong else [])
        problems += [] if run.code == code else ["other"]
        print(f"  {what}: exit {run.code}: {', '.join(problems) or 'ok'}")
        tally.add(problems, run.output)

    job = folder / "fail-after-write"
    spec = write(job, pipeline_spec())
    check("prepare, train, evaluate", launch_local(spec), (ran(job) or [{}])[-1].get("rows") != 3)
    result = job / "volumes" / "vol" / "probe" / "stages" / "train" / "result.json"
    trained = json.loads(result.read_text())
    run = launch_local(spec, "--set", "stages.prepare.retries=2", "--set", "retries.max_delay=20s",
                       "--set", "compute.timeout=1h")
    check("only retries, compute and timeouts changed: prepare skipped, train's result kept", run,
          "prepare: skipped" not in run.output or json.loads(result.read_text()) != trained)
    run = launch_local(spec, "--rerun", "prepare", env={"PROBE_ROWS": "7", "PROBE_FAIL_AFTER_WRITE": "1"})
    check("--rerun prepare fails after writing other data: the old data stays", run, volume_rows(run) != 3, 1)
    run = launch_local(spec)
    check("then a plain rerun: prepare runs again, evaluate reads its data", run,
          "prepare: skipped" in run.output or (ran(job) or [{}])[-1] != {"stage": "evaluate", "step": 6, "rows": 3})

    job = folder / "inputs"
    job.mkdir()
    spec = with_inputs(job)
    check("prepare with inputs: [data/]", launch_local(spec), (ran(job) or [{}])[-1].get("rows") != 3)
    with open(job / "data" / "table.csv", "a") as out:
        out.write("d\ne\n")
    run = launch_local(spec)
    check("an input file changed: prepare runs again, train refuses the old checkpoints", run,
          "resumed from" in run.output or FRESH not in run.output or "resume: never" in run.output, 1)
    (job / "data" / "table.csv").write_text("x\n")
    run = launch_local(spec, "--rerun", "prepare")
    check("another change, then --rerun prepare: train still refuses", run,
          "resumed from" in run.output or FRESH not in run.output, 1)


def _hostile_drills(folder: Path, tally: StageTally) -> None:
    job = folder / "hostile"
    job.mkdir()
    subprocess.run(["git", "init", "-q", str(job)], check=True)
    subprocess.run(["git", "-C", str(job), "remote", "add", "origin",
                    "https://example.com/o/r.git?access_token=opaque-Xy12Zw"], check=True)
    (job / "Dockerfile.cuda").write_text("FROM python:3.11\n")
    (job / "shadow").write_text("root:*:20228:0:99999:7:::\n")
    base = "version: 1\nname: j\nimage: {code: local}\ntrain: {recipe: launcher.recipes.ppo:PPO}\n"
    cases = [("a token in the origin's query", base, ("--dry-run", "--use-local-code"), 0, "opaque-Xy12Zw"),
             ("a Dockerfile outside the repository",
              base.replace("{code: local}", "{code: local, dockerfile: ../../../etc/passwd}"), ("check",), 1,
              "root:"),
             ("extends: a file that is no spec", base + "extends: shadow\n", ("check",), 1, "root:")]
    for what, text, args, code, secret in cases:
        (job / "job.yaml").write_text(text)
        if "query" in what:  # the origin is provenance only with image.code: git
            (job / "job.yaml").write_text(text.replace("code: local", "code: git"))
            subprocess.run(["git", "-C", str(job), "add", "."], check=True)
            subprocess.run(["git", "-C", str(job), "-c", "user.name=t", "-c", "user.email=t@e", "commit",
                            "-qm", "c"], check=True)
            args = ("--dry-run",)
        got, output = _cli(job, *args, "job.yaml")
        problems = _common(got, output) + (["leaked tokens"] if secret in output else [])
        problems += [] if got == code else ["other"]
        if got == 1 and not (output.startswith("job.yaml:") and ": $." in output.splitlines()[0]):
            problems.append("unlocated")
        print(f"  {what}: exit {got}: {', '.join(problems) or 'ok'}")
        if got:
            print(f"    {output.splitlines()[0]}")
        tally.add(problems, output)


def stage_drills() -> int:
    tally = StageTally()
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        _stage_data_drills(Path(tmp), tally)
        _hostile_drills(Path(tmp), tally)
    print(f"stage drills: a prepare that fails after writing, a rerun that changes only how it runs, "
          f"changed inputs in two orders, a token in the origin, a Dockerfile outside the "
          f"repository, extends of no spec; in {time.monotonic() - start:.0f} s")
    return tally.report("stage drills")


class CheckpointTally(Tally):
    KINDS = ("tracebacks", "exit 3", "overwritten", "checkpoints lost", "wrong loads",
             "fresh over unloadable", "unreported", "not reproducible", "other")


def _drill(tally: Tally, what: str, run: Any, problems: list[str]) -> None:
    """One drill's line; `run` is a tests/runjob.py Run."""
    code, output = run.code, run.output
    problems = _common(code, output) + problems
    print(f"  {what}: exit {code}: {', '.join(problems) or 'ok'}")
    tally.add(problems, output)


def _never_drills(tally: Tally, folder: Path) -> None:
    """checkpoint.resume: never sets every earlier checkpoint aside, and evaluate reads this run's."""
    from runjob import checkpoints, launch_local, probe_spec, write_spec
    from test_checkpoint_ownership import steps_in
    from test_pipeline_local import pipeline_spec, ran
    from test_pipeline_local import write as write_pipeline

    spec = write_spec(folder / "never", probe_spec(steps=9))
    launch_local(spec)
    job = folder / "never" / "volumes" / "vol" / "probe"
    before = steps_in(job)
    write_spec(folder / "never", probe_spec(steps=6, checkpoint={"resume": "never"}))
    run = launch_local(spec)
    aside = sorted((job / "set-aside").iterdir()) if (job / "set-aside").is_dir() else []
    problems = [] if run.code == 0 else ["other"]
    if len(before) != 3 or not aside or steps_in(aside[0]) != before:
        problems.append("overwritten")
    if "resumed from" in run.output or checkpoints(job) != ["step-00000003", "step-00000006"]:
        problems.append("wrong loads")
    _drill(tally, "resume: never after a longer run (3 checkpoints set aside, none overwritten)",
           run, problems)

    spec = write_pipeline(folder / "pipeline", pipeline_spec(steps=6))
    launch_local(spec)
    write_pipeline(folder / "pipeline", pipeline_spec(steps=3, checkpoint={"resume": "never"}))
    run = launch_local(spec)
    evaluated = ran(folder / "pipeline")[-1:]
    problems = ([] if run.code == 0 else ["other"]) + (
        [] if evaluated == [{"stage": "evaluate", "step": 3, "rows": 3}] else ["wrong loads"])
    _drill(tally, f"a pipeline with resume: never: evaluate read {evaluated[0].get('step') if evaluated else None} "
           "(this run's train left 3, an older run 6)", run, problems)


def _unloadable_drills(tally: Tally, folder: Path) -> None:
    """State a weights-only load refuses: refused at the first save; an older launcher's
    checkpoints of it stop the run, and stay."""
    from runjob import checkpoints, launch_local, probe_spec, write_spec
    from test_checkpoint_ownership import as_an_older_launcher_wrote_it, digests, rng_spec

    run = launch_local(rng_spec(folder / "numpy", "NumpyState", steps=6))
    problems = [] if run.code == 1 and "state_dict() holds what torch.load(weights_only=True) " \
        "refuses" in run.output else ["other"]
    if checkpoints(folder / "numpy" / "volumes" / "vol" / "probe"):
        problems.append("other")  # a checkpoint no resume could load was written
    _drill(tally, "recipe state holding np.random.get_state(): refused at the first save", run, problems)

    spec = write_spec(folder / "old", probe_spec(steps=6))
    launch_local(spec)
    job = folder / "old" / "volumes" / "vol" / "probe"
    for name in checkpoints(job):
        as_an_older_launcher_wrote_it(job / name)
    before = {k: v for k, v in digests(job).items() if k.startswith("step-")}
    write_spec(folder / "old", probe_spec(steps=9))
    run = launch_local(spec)
    after = {k: v for k, v in digests(job).items() if k.startswith("step-")}
    problems = [] if run.code == 1 and "cannot resume from step-00000006: its recipe state holds" \
        in run.output else ["fresh over unloadable" if run.code == 0 else "other"]
    if after != before:
        problems.append("overwritten" if set(after) >= set(before) else "checkpoints lost")
    _drill(tally, "an older launcher's checkpoints no resume can load: a permanent error, kept",
           run, problems)


def _manifest_drills(tally: Tally, folder: Path) -> None:
    """Malformed manifests are skipped with a warning; every train.* change is reported."""
    import json

    from runjob import launch_local, probe_spec, write_spec

    malformed = {
        "nested 100,000 deep": lambda text: text[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "extra.train_config \"abc\"": lambda text: json.dumps(
            {**json.loads(text), "extra": {**json.loads(text)["extra"], "train_config": "abc"}}),
    }
    for index, (what, change) in enumerate(malformed.items()):
        spec = write_spec(folder / f"manifest-{index}", probe_spec(steps=6))
        launch_local(spec)
        manifest = folder / f"manifest-{index}" / "volumes" / "vol" / "probe" / "step-00000006" / "manifest.json"
        manifest.write_text(change(manifest.read_text()))
        write_spec(folder / f"manifest-{index}", probe_spec(steps=9))
        run = launch_local(spec)
        problems = [] if run.code == 0 and "checkpoint step-00000006 skipped: manifest.json is" \
            in run.output else ["other"]
        if "resumed from step-00000003 (after update 3 of 9)" not in run.output:
            problems.append("wrong loads")
        _drill(tally, f"a manifest {what}: skipped with a warning, resumed from step 3", run, problems)

    spec = write_spec(folder / "train-change", probe_spec(steps=3))
    launch_local(spec)
    write_spec(folder / "train-change", probe_spec(steps=6, train={"seed": 5, "gradient_accumulation_steps": 2}))
    run = launch_local(spec)
    said = "train changed since step-00000003: gradient_accumulation_steps 1 -> 2, seed 0 -> 5, steps 3 -> 6"
    problems = ([] if run.code == 0 else ["other"]) + ([] if said in run.output else ["unreported"])
    _drill(tally, "train.seed and gradient_accumulation_steps changed: reported on resume", run, problems)


def _random_drill(tally: Tally, folder: Path) -> None:
    """A recipe drawing from Python's `random`, two processes: two runs and a resumed one agree."""
    from runjob import launch_local
    from statecmp import differences
    from test_checkpoint_ownership import shuffled_spec, state_of

    straight = launch_local(shuffled_spec(folder / "straight", steps=6), "--processes", "2")
    first = launch_local(shuffled_spec(folder / "split", steps=3), "--processes", "2")
    resumed = launch_local(shuffled_spec(folder / "split", steps=6), "--processes", "2")
    problems = [] if straight.code == first.code == resumed.code == 0 else ["other"]
    if problems or differences(state_of(folder / "split", 3), state_of(folder / "straight", 3)) \
            or differences(state_of(folder / "split", 6), state_of(folder / "straight", 6)):
        problems.append("not reproducible")
    _drill(tally, "random.sample in a 2-process recipe: two runs, then a resumed one, bit-identical "
           "(random_states_0/1.pkl included)", resumed, problems)


def checkpoint_drills() -> int:
    """A checkpoint is loaded only by the run it belongs to, and never overwritten."""
    tally = CheckpointTally()
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for drill in (_never_drills, _unloadable_drills, _manifest_drills, _random_drill):
            drill(tally, Path(tmp))
    print(f"checkpoint drills: resume: never, unloadable recipe state, malformed manifests, train "
          f"changes, two-process random; in {time.monotonic() - start:.0f} s")
    return tally.report("checkpoint drills")


def _namespace() -> list[str] | None:
    """How to run a command in a private mount namespace (to mount a small, read-only or second
    filesystem for one `launch`), or None where this machine does not allow it."""
    for prefix in (["unshare", "--mount"], ["unshare", "--mount", "--map-root-user"]):
        try:
            if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
                return prefix
        except FileNotFoundError:
            return None
    return None


def _launch_mounted(folder: Path, spec: Path, mounts: str, ns: list[str]) -> tuple[int, str]:
    """`launch SPEC --local` with `mounts` (shell commands run first, in a private namespace);
    then, while the mounts are still there, a `LEFTOVER path` line for each temporary file."""
    import os
    import shlex

    command = (f"{mounts} && {{ {shlex.quote(sys.executable)} -m launcher.cli {shlex.quote(str(spec))} "
               "--local --volumes-dir volumes; code=$?; find volumes -name '.tmp-*' -printf "
               "'LEFTOVER %p\\n'; exit $code; }")
    env = {**os.environ, "PROBE_DIR": str(folder)}
    env.pop("LAUNCH_FAULT", None)
    run = subprocess.run([*ns, "sh", "-c", command], cwd=folder, env=env, capture_output=True,
                         text=True, timeout=RUN_TIMEOUT_S)
    return run.returncode, run.stdout + run.stderr


def _storage_problems(code: int, output: str) -> list[str]:
    """What a storage failure must never do: exit 3, a traceback, torch's internals, every attempt
    spent, a partial file on the volume."""
    problems = _common(code, output) + ([] if code == 1 else ["other"])
    if "inline_container" in output:
        problems.append("other")
    if "(1: transient, 2: transient" in output:
        problems.append("other")  # retried although a retry fails the same way
    if "LEFTOVER " in output:
        problems.append("left over")
    return problems


def volume_drills() -> int:
    """The local volume deletes nothing its job does not own, and a storage failure is the user's:
    through real `launch --local` processes; small, read-only and second filesystems are real
    mounts where this machine allows a private mount namespace."""
    import shutil

    from runjob import RECIPES, checkpoints, launch_local, probe_spec, write_spec
    from test_signals import rows, start_launch, wait_for

    from launcher.runtime.checkpoint import store

    tally = Tally()
    start = time.monotonic()

    def report(what: str, problems: list[str], output: str) -> None:
        print(f"  {what}: {', '.join(problems) or 'ok'}")
        tally.add(problems, output)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # @work removed during a run, another job's checkpoints on the volume.
        work = folder / "work"
        other = launch_local(write_spec(work, {**probe_spec(steps=6), "name": "other"}, name="other.yaml"))
        theirs = checkpoints(work / "volumes" / "vol" / "other")
        shutil.copy(RECIPES / "vandal_recipe.py", work)
        run = launch_local(write_spec(work, probe_spec(steps=9, train={
            "recipe": "vandal_recipe:Vandal",
            "config": {"remove": str(work / "volumes" / "@work"), "at": 4}})))
        problems = _common(run.code, run.output) + ([] if run.code == 0 and other.code == 0 else ["other"])
        if checkpoints(work / "volumes" / "vol" / "other") != theirs or len(theirs) != 2:
            problems.append("checkpoints lost")
        if checkpoints(work / "volumes" / "vol" / "probe") != ["step-00000003", "step-00000006", "step-00000009"]:
            problems.append("checkpoints lost")
        if "resumed from step-00000003" not in run.output:
            problems.append("wrong loads")
        report(f"@work removed during a run: exit {run.code}", problems, run.output)

        # @locks removed during a run, then the same job launched again: the lock is gone, but the
        # first run's working copy in use refuses the second; nothing is deleted.
        locks = folder / "locks"
        locks.mkdir()
        launch_local(write_spec(locks, {**probe_spec(steps=6), "name": "other"}, name="other.yaml"))
        theirs = checkpoints(locks / "volumes" / "vol" / "other")
        first = start_launch(locks, probe_spec(steps=400, retries={"max_retries": 0},
                                               train={"config": {"delay_s": 0.05}}))
        wait_for("the first run to commit a checkpoint",
                 lambda: checkpoints(locks / "volumes" / "vol" / "probe") and len(rows(locks)) >= 8)
        shutil.rmtree(locks / "volumes" / "@locks")
        second = launch_local(write_spec(locks / "second", probe_spec(steps=3)), "--volumes-dir",
                              str(locks / "volumes"))
        code = first.wait(timeout=RUN_TIMEOUT_S)
        output = (locks / "launch.log").read_text()
        problems = _common(code, output) + _common(second.code, second.output)
        if checkpoints(locks / "volumes" / "vol" / "other") != theirs or len(theirs) != 2:
            problems.append("checkpoints lost")
        if not store.complete(locks / "volumes" / "vol" / "probe"):
            problems.append("checkpoints lost")
        if code != 0 or second.code != 1 or "already running" not in second.output:
            problems.append("other")  # two runs of one job at once
        report(f"@locks removed, the job launched again: the first exit {code}, the second exit "
               f"{second.code}", problems, output + second.output)

        # checkpoint.volume '..' and '.': refused by check and by a run, nothing written.
        names = folder / "names"
        for name in ("..", "."):
            spec = write_spec(names, probe_spec(steps=3, checkpoint={"volume": name}))
            run = launch_local(spec)
            problems = _common(run.code, run.output) + ([] if run.code == 1 else ["other"])
            if not run.output.startswith(f"{spec}:") or len(run.output.strip().splitlines()) != 1:
                problems.append("other")
            if (names / "volumes").exists() or (names / "probe").exists():
                problems.append("other")
            report(f"checkpoint.volume {name!r}: exit {run.code}", problems, run.output)

        # A job folder that is a link out of the volume; a `.trash-` leftover that is a link.
        linked = folder / "linked"
        (linked / "elsewhere").mkdir(parents=True)
        (linked / "elsewhere" / "notes.txt").write_text("a user's file")
        (linked / "volumes" / "vol").mkdir(parents=True)
        (linked / "volumes" / "vol" / "probe").symlink_to(linked / "elsewhere")
        run = launch_local(write_spec(linked, probe_spec(steps=3)))
        problems = _common(run.code, run.output) + ([] if run.code == 1 else ["other"])
        if [p.name for p in (linked / "elsewhere").iterdir()] != ["notes.txt"]:
            problems.append("other")
        report(f"a job folder linked out of the volume: exit {run.code}", problems, run.output)
        trash = folder / "trash"
        launch_local(write_spec(trash, probe_spec(steps=3)))
        (trash / "outside").mkdir()
        (trash / "volumes" / "vol" / "probe" / ".trash-step-00000001-ff").symlink_to(trash / "outside")
        runs = [launch_local(write_spec(trash, probe_spec(steps=s))) for s in (4, 5)]
        problems = [p for r in runs for p in _common(r.code, r.output)]
        if [r.output.count("removed leftover .trash-") for r in runs] != [1, 0] or not (trash / "outside").is_dir():
            problems.append("left over")
        report("a .trash- leftover that is a link: removed once, not followed", problems,
               runs[-1].output)

        # Storage: read-only, another filesystem, a full disk (prepare's data; a checkpoint).
        ns = _namespace()
        if ns is None:
            print("  storage drills on real filesystems: not run (no private mount namespace here)")
        else:
            drills_on = [
                ("a read-only volumes folder", "probe", "mount --bind volumes volumes && "
                 "mount -o remount,bind,ro volumes"),
                ("a volume on another filesystem", "probe", "mkdir -p volumes/vol && "
                 "mount -t tmpfs -o size=20m tmpfs volumes/vol"),
                ("a full disk in prepare (300 KiB)", "digits", "mount -t tmpfs -o size=300k tmpfs volumes"),
                ("a full disk at a checkpoint (600 KiB)", "digits", "mount -t tmpfs -o size=600k tmpfs volumes"),
            ]
            for index, (what, kind, mounts) in enumerate(drills_on):
                place = folder / f"storage-{index}"
                (place / "volumes").mkdir(parents=True)
                if kind == "probe":
                    spec = write_spec(place, probe_spec(steps=3))
                else:
                    spec = place / "digits.yaml"
                    spec.write_text((ROOT / "jobs" / "digits.yaml").read_text()
                                    .replace("steps: 400", "steps: 10").replace("every_steps: 100", "every_steps: 5"))
                code, output = _launch_mounted(place, spec, mounts, ns)
                problems = _storage_problems(code, output)
                error = next((line for line in output.splitlines()
                              if line.startswith(("  failed in", "  error", "volumes"))), "")
                report(f"{what}: exit {code}: {error.strip()[:160]}", problems, output)
    print(f"volume drills: @work and @locks removed during a run, '..' and '.' as volume names, "
          f"links, read-only / other / full filesystems; in {time.monotonic() - start:.0f} s")
    return tally.report("volume drills")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fuzz", type=int, default=10_000, metavar="N", help="fuzz draws (default 10000; 0 skips)")
    parser.add_argument("--steps", type=int, default=12, help="updates of the killed job (default 12)")
    parser.add_argument("--every", type=int, default=3, help="its commit interval in updates (default 3)")
    parser.add_argument("--no-kills", action="store_true", help="skip the kill points")
    parser.add_argument("--no-drills", action="store_true", help="skip the drills")
    parser.add_argument("--no-driver-drills", action="store_true", help="skip the pipeline driver's drills")
    parser.add_argument("--no-stage-drills", action="store_true", help="skip the stage drills")
    parser.add_argument("--no-checkpoint-drills", action="store_true",
                        help="skip the drills of checkpoint ownership")
    parser.add_argument("--no-volume-drills", action="store_true",
                        help="skip the local volume's drills (removed folders, links, storage errors)")
    args = parser.parse_args()
    escapes = fuzz(args.fuzz) if args.fuzz else 0
    escapes += 0 if args.no_kills else kills(args.steps, args.every)
    escapes += 0 if args.no_drills else drills()
    escapes += 0 if args.no_driver_drills else driver_drills()
    escapes += 0 if args.no_stage_drills else stage_drills()
    escapes += 0 if args.no_checkpoint_drills else checkpoint_drills()
    escapes += 0 if args.no_volume_drills else volume_drills()
    print(f"escapes: {escapes}")
    return 1 if escapes else 0


if __name__ == "__main__":
    sys.exit(main())
