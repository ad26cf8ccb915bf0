"""The long reliability run: a 10,000-case fuzz of the spec pipeline and 50 seeded kill points.

Run: python bench/faults.py [--fuzz N] [--kills N] [--seed S]     (--fuzz 0 or --kills 0 skips)

Fuzz: the cases of tests/test_fuzz.py (mutated specs, wild free text, random YAML and bytes)
through `launch check` and, for a quarter, `launch --dry-run`, in-process. Each must end in
exit 0, or exit 1 with location-first messages only.
Kills: the seeded points of tests/fault/test_kill_anywhere.py (SIGKILL at a step, or inside a
checkpoint write, publish or commit), each a `launch --local` run whose retry must finish with
the parameters of an uninterrupted run, redoing at most one commit interval of work.

Prints counts and every escape (a traceback, exit 3, a hang, an unlocated message, mismatched
final parameters); exits 1 if there was any.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "fault")]

KILL_TIMEOUT_S = 600  # per run: a hang guard; a clean run takes ~15 s


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
    shown: list[str] = []
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as folder, test_fuzz.corpus(Path(folder)) as root:
        @settings(test_fuzz.FUZZ, max_examples=count)
        @given(test_fuzz.cases())
        def sweep(case: test_fuzz.Case) -> None:  # counts every escape; never stops at one
            outcomes = test_fuzz.run_case(case, root)
            for o in outcomes:
                codes[f"{o.args[0]} exit {o.code}"] += 1
            for escape in test_fuzz.escapes(outcomes, case, root):
                kinds[_kind(escape)] += 1
                if len(shown) < 20:
                    shown.append(f"  {escape}\n    case: {case!r:.600}")

        sweep()
    total = sum(kinds.values())
    cases = sum(v for k, v in codes.items() if k.startswith("check "))
    print(f"fuzz: {cases} cases in {time.monotonic() - start:.1f} s; "
          + ", ".join(f"{k} {v}" for k, v in sorted(codes.items())))
    print(f"fuzz: escapes {total} (" + ", ".join(
        f"{k} {kinds[k]}" for k in ("tracebacks", "exit 3", "hangs", "unlocated",
                                    "check/render mismatch", "other")) + ")")
    for line in shown:
        print(line)
    return total


def kills(count: int, seed: int) -> int:
    from runjob import launch_local, probe_spec, write_spec
    from statecmp import differences, load_checkpoint
    from test_kill_anywhere import EVERY, STEPS, kill_points

    escapes: collections.Counter[str] = collections.Counter()
    resumed, completed, lost = 0, 0, []
    start = time.monotonic()
    spec = probe_spec(steps=STEPS, checkpoint={"every_steps": EVERY})
    with tempfile.TemporaryDirectory() as folder:
        clean = launch_local(write_spec(Path(folder) / "clean", spec), timeout=KILL_TIMEOUT_S)
        if clean.code != 0:
            print(f"kills: the uninterrupted run failed (exit {clean.code}):\n{clean.output[-2000:]}")
            return 1
        reference = load_checkpoint(clean.volume / "vol" / f"step-{STEPS:08d}")
        for index, (kind, phase, when) in enumerate(kill_points(seed, count)):
            trial = Path(folder) / f"trial-{index}"
            fault = f"{kind}:{phase}:{when}"
            try:
                run = launch_local(write_spec(trial, spec), env={"LAUNCH_FAULT": fault}, timeout=KILL_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                escapes["hangs"] += 1
                print(f"  {fault}: hang (no exit within {KILL_TIMEOUT_S} s)")
                continue
            problems = []
            if "Traceback" in run.output:
                problems.append("tracebacks")
            if run.code == 3:
                problems.append("exit 3")
            elif run.code != 0:
                problems.append("other")
            final = trial / "volumes" / "vol" / f"step-{STEPS:08d}"
            if run.code == 0:
                completed += 1
                if not final.is_dir() or differences(load_checkpoint(final), reference):
                    problems.append("mismatched final params")
            if "resumed from step" in run.output:
                resumed += 1
            executed = [json.loads(row)["step"] for row in (trial / "probe-rank0.jsonl").read_text().splitlines()] \
                if (trial / "probe-rank0.jsonl").is_file() else []
            lost.append(len(executed) - STEPS)
            if lost[-1] > EVERY:
                problems.append("lost more than a commit interval")
            for problem in problems:
                escapes[problem] += 1
            status = ", ".join(problems) or "ok"
            print(f"  {index + 1:2d}/{count} {fault:22s} exit {run.code}, redid {lost[-1]} steps: {status}")
            if problems:
                print("    " + run.output[-1500:].replace("\n", "\n    "))
    total = sum(escapes.values())
    print(f"kills: {count} trials (seed {seed}, {STEPS} steps, commit every {EVERY}) in "
          f"{time.monotonic() - start:.0f} s; completed {completed}, resumed {resumed}; "
          f"max lost work {max(lost, default=0)} steps redone (commit interval {EVERY})")
    print(f"kills: escapes {total} (" + ", ".join(
        f"{k} {escapes[k]}" for k in ("tracebacks", "exit 3", "hangs", "mismatched final params",
                                      "lost more than a commit interval", "other")) + ")")
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fuzz", type=int, default=10_000, metavar="N", help="fuzz cases (default 10000)")
    parser.add_argument("--kills", type=int, default=50, metavar="N", help="kill points (default 50)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the kill points (default 2026)")
    args = parser.parse_args()
    escapes = (fuzz(args.fuzz) if args.fuzz else 0) + (kills(args.kills, args.seed) if args.kills else 0)
    print(f"escapes: {escapes}")
    return 1 if escapes else 0


if __name__ == "__main__":
    sys.exit(main())
