"""The digits pipeline, timed as a user runs it: `launch jobs/digits.yaml --local`, on this
machine's CPU (no GPU), once per seed, each with fresh volumes.

Run: python bench/digits.py [--seeds 0 1 2]
Prints, per seed and as medians over the seeds: each stage's wall time (its worker processes'
start-up included), the whole command's wall time, and the test accuracy evaluate reports.
Target: test accuracy >= 0.97, the whole pipeline in under a minute on 2 CPU cores.
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
STAGE = re.compile(r"^  (prepare|train|evaluate) +finished, ([\d.]+) s", re.MULTILINE)
ACCURACY = re.compile(r"^  evaluate .*test_accuracy ([\d.]+)", re.MULTILINE)


def run_once(seed: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as volumes:
        argv = [sys.executable, "-m", "launcher.cli", "jobs/digits.yaml", "--local",
                "--volumes-dir", volumes, "--set", f"train.seed={seed}"]
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"seed {seed}: launch exited with {proc.returncode}\n{proc.stderr}")
    figures = {name: float(seconds) for name, seconds in STAGE.findall(proc.stderr)}
    found = ACCURACY.search(proc.stderr)
    assert found is not None and len(figures) == 3, proc.stderr
    return {**figures, "accuracy": float(found[1]), "wall": wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    runs = []
    for seed in args.seeds:
        f = run_once(seed)
        runs.append(f)
        print(f"seed {seed}: prepare {f['prepare']:.1f} s, train {f['train']:.1f} s, evaluate "
              f"{f['evaluate']:.1f} s; whole command {f['wall']:.1f} s; test accuracy {f['accuracy']:.4f}")
    med = {k: statistics.median(r[k] for r in runs) for k in ("prepare", "train", "evaluate", "wall", "accuracy")}
    print(f"median over {len(runs)} seeds of `launch jobs/digits.yaml --local` (local CPU, no GPU):")
    print(f"  prepare / train / evaluate  {med['prepare']:.1f} s / {med['train']:.1f} s / "
          f"{med['evaluate']:.1f} s (wall, worker start-up included)")
    print(f"  whole command               {med['wall']:.1f} s (target < 60)")
    print(f"  test accuracy               {med['accuracy']:.4f} (target >= 0.97; lowest "
          f"{min(r['accuracy'] for r in runs):.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
