"""Median wall time of `launch --dry-run jobs/ppo.yaml` against `python -c pass` and `modal --help`.

Run: python bench/cli_latency.py [--runs N]
All three are measured interleaved in one run, so machine noise hits them alike.
Targets: dry-run at most 0.25 s, and at most half of `modal --help`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _launch() -> list[str]:
    exe = shutil.which("launch")
    return [exe] if exe else [sys.executable, "-m", "launcher.cli"]


def _modal() -> list[str]:
    exe = shutil.which("modal")
    return [exe] if exe else [sys.executable, "-m", "modal"]


COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "launch --dry-run jobs/ppo.yaml": [*_launch(), "--dry-run", "jobs/ppo.yaml"],
    "modal --help": [*_modal(), "--help"],
}


def once(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    for argv in COMMANDS.values():  # warm the OS file cache and any bytecode caches
        once(argv)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, argv in COMMANDS.items():
            times[name].append(once(argv))
    median = {name: statistics.median(ts) for name, ts in times.items()}
    for name, value in median.items():
        print(f"{name:34s} median {value * 1000:7.1f} ms over {runs} runs")
    dry, modal = median["launch --dry-run jobs/ppo.yaml"], median["modal --help"]
    print(f"dry-run / modal --help = {dry / modal:.2f} (target <= 0.50); "
          f"dry-run {dry:.3f} s (target <= 0.25 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
