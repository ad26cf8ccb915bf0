"""The long reliability run: spec fuzzing, every kill point of a job, and drills of jobs sharing
a volume.

Run: python bench/faults.py [--fuzz N] [--steps S --every E] [--no-kills] [--no-drills]

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
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    print(tally.line("kills"))
    return sum(tally.kinds.values())


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
    print(tally.line("drills"))
    return sum(tally.kinds.values())


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

    from launcher.runtime import checkpoint

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
        if not checkpoint.complete(locks / "volumes" / "vol" / "probe"):
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
    print(tally.line("volume drills"))
    return sum(tally.kinds.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fuzz", type=int, default=10_000, metavar="N", help="fuzz draws (default 10000; 0 skips)")
    parser.add_argument("--steps", type=int, default=12, help="updates of the killed job (default 12)")
    parser.add_argument("--every", type=int, default=3, help="its commit interval in updates (default 3)")
    parser.add_argument("--no-kills", action="store_true", help="skip the kill points")
    parser.add_argument("--no-drills", action="store_true", help="skip the drills")
    parser.add_argument("--no-volume-drills", action="store_true",
                        help="skip the local volume's drills (removed folders, links, storage errors)")
    args = parser.parse_args()
    escapes = fuzz(args.fuzz) if args.fuzz else 0
    escapes += 0 if args.no_kills else kills(args.steps, args.every)
    escapes += 0 if args.no_drills else drills()
    escapes += 0 if args.no_volume_drills else volume_drills()
    print(f"escapes: {escapes}")
    return 1 if escapes else 0


if __name__ == "__main__":
    sys.exit(main())
