"""The main job, timed as a user runs it: `launch jobs/ppo.yaml --local`, startup included.

Run: python bench/ppo.py [--runs N] [--spec jobs/ppo.yaml]
Prints, per run and as medians: env-steps/s, wall seconds until the trailing-100-episode mean
return first reaches 475 (from the command's start), stage 1 and stage 2 init times, and the
checkpoint overhead as a % of training time at the spec's cadence.
Targets: solved in <= 15 s wall on 2 cores; stage 2 <= 5% of init; checkpoint overhead <= 2%.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEP = re.compile(r"\[launch\] update (\d+) of \d+: .*return ([\d.]+), ([\d,]+) env-steps/s")
STAGE = re.compile(r"\[launch\] (stage[12]) took ([\d.]+) s")
OVERHEAD = re.compile(r"checkpoints\s+(\d+) written .*\(([\d.]+) s, ([\d.]+)% of training time\)")
SOLVED = 475.0


def run_once(spec: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as volumes:
        argv = [sys.executable, "-m", "launcher.cli", spec, "--local", "--volumes-dir", volumes,
                "--set", "train.log_every=1"]
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        figures: dict[str, float] = {}
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.perf_counter() - start
            if (m := STEP.search(line)):
                figures["sps"] = float(m[3].replace(",", ""))
                figures["return"] = float(m[2])
                if float(m[2]) >= SOLVED and "solved_s" not in figures:
                    figures["solved_s"], figures["solved_step"] = now, int(m[1])
            elif (m := STAGE.search(line)):
                figures[m[1]] = float(m[2])
            elif (m := OVERHEAD.search(line)):
                figures["checkpoints"], figures["overhead_pct"] = int(m[1]), float(m[3])
        if proc.wait() != 0:
            raise SystemExit(f"launch exited with {proc.returncode}")
        figures["wall_s"] = time.perf_counter() - start
        return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--spec", default="jobs/ppo.yaml")
    args = parser.parse_args()
    runs = []
    for i in range(args.runs):
        f = run_once(args.spec)
        runs.append(f)
        print(f"run {i + 1}: solved at update {f.get('solved_step', 'never')} after "
              f"{f.get('solved_s', float('nan')):.1f} s wall; {f['sps']:,.0f} env-steps/s; "
              f"stage1 {f['stage1']:.2f} s, stage2 {f['stage2']:.3f} s; "
              f"{f['checkpoints']:.0f} checkpoints, {f['overhead_pct']:.2f}% of training; "
              f"whole command {f['wall_s']:.1f} s; final return {f['return']:.1f}")
    med = {k: statistics.median(r[k] for r in runs) for k in ("sps", "stage1", "stage2", "overhead_pct", "wall_s")}
    solved = [r["solved_s"] for r in runs if "solved_s" in r]
    share = 100 * med["stage2"] / (med["stage1"] + med["stage2"])
    print(f"median over {args.runs} runs of `launch {args.spec} --local`:")
    print(f"  env-steps/s             {med['sps']:,.0f}")
    print(f"  wall s to return >= 475 {statistics.median(solved):.1f} (target <= 15; solved in "
          f"{len(solved)}/{args.runs} runs)" if solved else "  never solved")
    print(f"  stage 1 / stage 2 init  {med['stage1']:.2f} s / {med['stage2']:.3f} s "
          f"(stage 2 = {share:.1f}% of init; target <= 5%)")
    print(f"  checkpoint overhead     {med['overhead_pct']:.2f}% of training time (target <= 2%)")
    print(f"  whole command           {med['wall_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
