"""The local snapshot against fresh workers: how soon a retry, a pipeline's later stage and a
trial start, on the digits pipeline as a user runs it.

Run: python bench/snapshot.py [--runs 2]

Each run is `launch jobs/digits.yaml --local --set snapshot=MODE` (prepare -> train ->
evaluate, fresh volumes) with train's first attempt killed after update 150
(LAUNCH_FAULT=kill:step:150), so its retry resumes from step-100; LAUNCH_TIMELINE marks every
process's phases. Runs alternate between `snapshot: none` (every attempt a fresh worker that
imports torch and accelerate and runs stage 1) and `snapshot: cpu` (one zygote does the
imports, one snapshot process per class runs stage 1, every attempt is forked from it).

Prints medians per mode: each attempt's start, from the moment it is due (the supervisor
announces it) to the end of its stage 2; the whole command against the sum of the stages' own
work (from the end of stage 2 to the attempt's exit, every attempt); the zygote's and each
snapshot process's own start-up and memory (RSS, and PSS: pages shared after a fork counted
once between the processes sharing them). Targets: each start after the first <= 0.5 s with
the snapshot; the first attempt no slower than without it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FAULT = "kill:step:150"
# The attempts of one run, in order (prepare, train killed, train's retry, evaluate).
ATTEMPTS = ("prepare", "train, attempt 1", "train, retry", "evaluate")
CLASSES = ("prepare", "train", "evaluate")


def run_once(mode: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        timeline = Path(tmp) / "timeline.jsonl"
        argv = [sys.executable, "-m", "launcher.cli", "jobs/digits.yaml", "--local",
                "--volumes-dir", tmp, "--set", f"snapshot={mode}"]
        env = {**os.environ, "LAUNCH_TIMELINE": str(timeline), "LAUNCH_FAULT": FAULT}
        start = time.time()
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env)
        end = time.time()
        if proc.returncode != 0:
            raise SystemExit(f"{mode}: launch exited with {proc.returncode}\n{proc.stderr}")
        marks = [json.loads(line) for line in timeline.read_text().splitlines()]
    return figures(sorted(marks, key=lambda m: m["time"]), start, end)


def _after(marks: list[dict[str, Any]], t: float, test: Any) -> dict[str, Any]:
    return next(m for m in marks if m["time"] >= t and test(m))


def _is_stage2(mark: dict[str, Any]) -> bool:
    return mark["phase"] == "stage2" or mark["phase"].endswith(" stage2")


def figures(marks: list[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    out: dict[str, Any] = {"whole": end - start, "work": 0.0}
    dues = [m for m in marks if m["phase"] == "due"]
    assert len(dues) == len(ATTEMPTS), [m["phase"] for m in marks]
    for name, due in zip(ATTEMPTS, dues):
        ready = _after(marks, due["time"], _is_stage2)
        exited = _after(marks, ready["time"], lambda m: m["phase"] == "worker_exited")
        out[name] = ready["time"] - due["time"]
        out["work"] += exited["time"] - ready["time"]
    out["first"] = out["prepare"]
    # The first attempt from its worker's go (the imports that overlap validation left out).
    go = next(m for m in marks if m["phase"] == "go")
    out["first from go"] = _after(marks, go["time"], _is_stage2)["time"] - go["time"]
    zygote = next((m for m in marks if m["phase"] == "zygote"), None)
    if zygote is not None:
        spawn = next(m for m in marks if m["phase"] == "spawn")
        held = next((m for m in marks if m["phase"] == "zygote_memory"), {})
        out["zygote"] = {"start": zygote["time"] - spawn["time"], **_memory(held)}
    for begun in (m for m in marks if m["phase"] == "snapshot_start"):
        mine = [m for m in marks if m["pid"] == begun["pid"]]
        taken = next(m for m in mine if m["phase"] == "snapshot")
        held = next((m for m in mine if m["phase"] == "snapshot_memory"), {})
        stage1 = next(m["phase"] for m in mine if m["phase"].endswith("stage1"))
        name = stage1.split()[0] if " " in stage1 else "train"
        out[f"snapshot {name}"] = {"start": taken["time"] - begun["time"], **_memory(held)}
    return out


def _memory(mark: dict[str, Any]) -> dict[str, float]:
    return {k: mark[k] for k in ("rss_mib", "pss_mib") if k in mark}


def _med(runs: list[dict[str, Any]], key: str, field: str | None = None) -> float | None:
    values = [(r[key][field] if field else r[key]) for r in runs if key in r and (not field or field in r[key])]
    return statistics.median(values) if values else None


def _cell(value: float | None, unit: str = "s") -> str:
    return f"{value:8.2f} {unit:<3}" if value is not None else f"{'-':>8}    "


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="runs of each mode, interleaved")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"none": [], "cpu": []}
    for i in range(args.runs):
        for mode in runs:
            runs[mode].append(run_once(mode))
            r = runs[mode][-1]
            print(f"run {i + 1}, snapshot: {mode}: " + ", ".join(f"{a} {r[a]:.2f} s" for a in ATTEMPTS)
                  + f"; whole command {r['whole']:.1f} s, own work {r['work']:.1f} s", flush=True)
    none, cpu = runs["none"], runs["cpu"]
    print(f"\nmedians over {args.runs} runs each of `LAUNCH_FAULT={FAULT} launch jobs/digits.yaml --local "
          f"--set snapshot=MODE`; local: {os.cpu_count()} CPU cores, no GPU; load average "
          f"{os.getloadavg()[0]:.2f}")
    print(f"  {'from due to the end of stage 2':<40} {'snapshot: none':>14} {'snapshot: cpu':>14}")
    for name in ATTEMPTS:
        print(f"  {name:<40} {_cell(_med(none, name))}   {_cell(_med(cpu, name))}")
    print(f"  {'prepare, from its worker go':<40} {_cell(_med(none, 'first from go'))}   "
          f"{_cell(_med(cpu, 'first from go'))}")
    print(f"  {'whole command':<40} {_cell(_med(none, 'whole'))}   {_cell(_med(cpu, 'whole'))}")
    print(f"  {'stages own work (stage 2 end to exit)':<40} {_cell(_med(none, 'work'))}   {_cell(_med(cpu, 'work'))}")
    for mode, rs in runs.items():
        whole, work = _med(rs, "whole"), _med(rs, "work")
        assert whole is not None and work is not None
        print(f"  snapshot: {mode}: the command spends {whole - work:.2f} s beyond the stages' own work")
    print("  a second sweep trial: not measured; each `launch` takes its own snapshot (there is no "
          "snapshot process shared between launches), so a trial starts as a first attempt does")
    print(f"  zygote (spawn to app imported)          {_cell(_med(cpu, 'zygote', 'start'))}, RSS "
          f"{_med(cpu, 'zygote', 'rss_mib') or 0:.0f} MiB, PSS {_med(cpu, 'zygote', 'pss_mib') or 0:.0f} MiB")
    for name in CLASSES:
        key = f"snapshot {name}"
        print(f"  snapshot of {name:<9} (its stage 1)    {_cell(_med(cpu, key, 'start'))}, RSS "
              f"{_med(cpu, key, 'rss_mib') or 0:.0f} MiB, PSS {_med(cpu, key, 'pss_mib') or 0:.0f} MiB")
    later = [_med(cpu, name) or 0.0 for name in ATTEMPTS[1:]]  # each stage after the first, and the retry
    worst = max(later)
    print(f"  later starts with the snapshot: at most {worst:.2f} s (target <= 0.50 s: "
          f"{'met' if worst <= 0.5 else f'missed by {worst - 0.5:.2f} s'})")
    for key, what in (("first", "from due"), ("first from go", "from its worker's go")):
        without, with_ = _med(none, key), _med(cpu, key)
        assert without is not None and with_ is not None
        verdict = "met" if with_ <= without else f"missed by {with_ - without:.2f} s"
        print(f"  first attempt ({what}): {with_:.2f} s with the snapshot, {without:.2f} s without "
              f"(target: no slower: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
