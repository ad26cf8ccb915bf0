"""The main job, timed as a user runs it: `launch jobs/ppo.yaml --local`, startup included.

Run: python bench/ppo.py [--seeds N] [--spec jobs/ppo.yaml]
Each of seeds 1..N runs once (a sweep, not one seed repeated), then once more on the same volume
with one more update, so that stage 2 loads a real checkpoint (the resume a retry or a
preemption makes). Prints per run and as medians: env-steps/s, wall seconds until the
trailing-100-episode mean return first reaches 475 (from the command's start), stage 1 and
stage 2 init times (fresh start, and resuming), and the checkpoint overhead as a % of training
time at the spec's cadence.
Local figures: this machine's CPU, no CUDA, and a local directory as the volume (no network
volume to reload from): on Modal, stage 2 adds the volume's reload and a host-to-device copy.
Targets: solved in <= 15 s wall on 2 cores; stage 2 <= 5% of init; checkpoint overhead <= 2%.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEP = re.compile(r"\[launch\] update (\d+) of \d+: return_mean100 ([\d.]+).*, ([\d,]+) env-steps/s")
STAGE = re.compile(r"\[launch\] (stage[12]) took ([\d.]+) s")
RESUMED = re.compile(r"\[launch\] resumed from \S+ \(after update (\d+)")
OVERHEAD = re.compile(r"checkpoints\s+(\d+) written .*\(([\d.]+) s, ([\d.]+)% of training time")
TOTAL = re.compile(r"updates\s+\d+ of (\d+)")
SOLVED = 475.0


def launch(spec: str, volumes: str, *sets: str) -> dict[str, float]:
    argv = [sys.executable, "-m", "launcher.cli", spec, "--local", "--volumes-dir", volumes]
    for item in sets:
        argv += ["--set", item]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    figures: dict[str, float] = {}
    output = []
    assert proc.stdout is not None
    for line in proc.stdout:
        output.append(line)
        now = time.perf_counter() - start
        if (m := STEP.search(line)):
            figures["sps"], figures["return"] = float(m[3].replace(",", "")), float(m[2])
            if float(m[2]) >= SOLVED and "solved_s" not in figures:
                figures["solved_s"], figures["solved_step"] = now, int(m[1])
        elif (m := STAGE.search(line)):
            figures[m[1]] = float(m[2])
        elif (m := RESUMED.search(line)) and "resumed" not in figures:  # train's, not evaluate's
            figures["resumed"] = int(m[1])
        elif (m := OVERHEAD.search(line)):
            figures["checkpoints"], figures["overhead_pct"] = int(m[1]), float(m[3])
        elif (m := TOTAL.search(line)):
            figures["steps"] = int(m[1])
    if proc.wait() != 0:
        raise SystemExit(f"launch exited with {proc.returncode}:\n{''.join(output)}")
    figures["wall_s"] = time.perf_counter() - start
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 1..N, one run each")
    parser.add_argument("--spec", default="jobs/ppo.yaml")
    args = parser.parse_args()
    runs, resumes = [], []
    for seed in range(1, args.seeds + 1):
        with tempfile.TemporaryDirectory() as volumes:
            f = launch(args.spec, volumes, "train.log_every=1", f"train.seed={seed}")
            r = launch(args.spec, volumes, f"train.seed={seed}", f"train.steps={int(f['steps']) + 1}")
        runs.append(f)
        resumes.append(r)
        print(f"seed {seed}: solved at update {f.get('solved_step', 'never')} after "
              f"{f.get('solved_s', float('nan')):.1f} s wall; {f['sps']:,.0f} env-steps/s; "
              f"stage1 {f['stage1']:.2f} s, stage2 {f['stage2']:.3f} s; "
              f"{f['checkpoints']:.0f} checkpoints, {f['overhead_pct']:.2f}% of training; "
              f"whole command {f['wall_s']:.1f} s; final return {f['return']:.1f}; "
              f"resumed after update {r.get('resumed', 0)}: stage2 {r['stage2']:.3f} s", flush=True)
    med = {k: statistics.median(r[k] for r in runs) for k in ("sps", "stage1", "stage2", "overhead_pct", "wall_s")}
    resume_stage2 = statistics.median(r["stage2"] for r in resumes)
    solved = [r["solved_s"] for r in runs if "solved_s" in r]
    share = 100 * med["stage2"] / (med["stage1"] + med["stage2"])
    resume_share = 100 * resume_stage2 / (med["stage1"] + resume_stage2)
    print(f"median over seeds 1..{args.seeds} of `launch {args.spec} --local` (local: {os.cpu_count()} "
          f"CPU cores, no CUDA, a local directory as the volume; load average {os.getloadavg()[0]:.2f}):")
    print(f"  env-steps/s             {med['sps']:,.0f}")
    print(f"  wall s to return >= 475 {statistics.median(solved):.1f} (target <= 15; solved in "
          f"{len(solved)}/{args.seeds} runs)" if solved else "  never solved")
    print(f"  stage 1 / stage 2 init  {med['stage1']:.2f} s / {med['stage2']:.3f} s fresh, "
          f"{resume_stage2:.3f} s resuming from a checkpoint (stage 2 = {share:.1f}% / "
          f"{resume_share:.1f}% of init; target <= 5%)")
    print(f"  checkpoint overhead     {med['overhead_pct']:.2f}% of training time (target <= 2%)")
    print(f"  whole command           {med['wall_s']:.1f} s (every stage of the spec: for jobs/ppo.yaml, "
          f"train and evaluate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
