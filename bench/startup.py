"""What the launcher adds to a training run: start-up before the first step, and the tail after
the last one, against the bare imports a training script cannot avoid.

Run: python bench/startup.py [--seeds 3] [--spec jobs/ppo.yaml]

For each seed (distinct seeds, runs interleaved: baseline, launch, paused baseline, ...):

- baseline: a fresh `python -c` that imports torch and accelerate, makes an `Accelerator()`
  and builds the spec's recipe (what any script training this recipe does before its first
  step), timed from the moment the bench starts it;
- paused baseline: the same with the cyclic garbage collector off, as the worker starts: the
  difference between it and the launch is what launcher itself adds;
- launch: `launch JOB --local --set 'stages={}'` (the whole command: supervisor, worker, the
  rendered app, both init stages, train; a pipeline's other stages left out), with LAUNCH_TIMELINE set so that every process marks its phases in wall-clock
  time; times are from the moment the bench starts the command.

Prints each run, then medians: the phases up to the first step, the tail from the last step
to the command's exit (with `log_every` 1), the time to a trailing-100 return of 475 (PPO),
and the targets:

    first step      <= baseline + 0.5 s
    exit            <= final checkpoint committed + 0.2 s
    return 475      <= 2.2 x baseline
Local figures: this machine's CPU, a local directory as the volume, the spec's snapshot as
the local run rehearses it (a fork server, docs/snapshots.md); `bench/snapshot.py` compares
it with fresh workers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RETURN = re.compile(r"\[launch\] update (\d+) of \d+: .*return ([\d.]+)")
SOLVED = 475.0

BASELINE = """
import sys, time
{gc}import torch, accelerate
from launcher.runtime.train.session import import_recipe
accelerator = accelerate.Accelerator(cpu=not torch.cuda.is_available())
recipe = import_recipe({recipe!r})({config!r}, {seed!r})
print(time.time(), flush=True)
"""
# The same script with the collector paused, as the worker starts
# (launcher.runtime.lifecycle.process): what is left between it and the launch is what launcher itself adds.
NO_GC = "import gc; gc.disable()\n"

# (label, from mark, to mark): the phases of a launch up to its first step, then its tail.
PHASES = [
    ("supervisor", "start", "spawn"),
    ("worker start", "spawn", "worker"),
    ("preload", "worker", "preloaded"),
    ("wait for app", "preloaded", "go"),
    ("app import", "go", "app"),
    ("stage 1", "app", "stage1"),
    ("stage 2", "stage1", "stage2"),
    ("to first step", "stage2", "first_step"),
    ("first step", "first_step", "first_step_done"),
]
TAIL = [
    ("final checkpoint", "last_step_done", "committed"),
    ("result reported", "committed", "result"),
    ("worker exit", "result", "worker_exited"),
    ("command exit", "worker_exited", "end"),
]


def baseline(spec_path: str, seed: int, gc: str = "") -> float:
    """Seconds from starting a fresh interpreter to a built recipe, with the spec's config."""
    sys.path.insert(0, str(ROOT))
    from launcher.load import load_spec

    spec = load_spec(spec_path, ()).spec
    code = BASELINE.format(recipe=spec.train.recipe, config=dict(spec.train.config), seed=seed, gc=gc)
    start = time.time()
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env=_env())
    return float(out.stdout.split()[-1]) - start


def _env() -> dict[str, str]:
    # As the local supervisor runs its workers, so that both sides use the same threads.
    return {"OMP_NUM_THREADS": str(os.cpu_count() or 1), **os.environ}


def launch(spec_path: str, seed: int) -> dict[str, float]:
    """Marks (seconds since the command's start) of one `launch JOB --local` run."""
    with tempfile.TemporaryDirectory() as tmp:
        timeline = Path(tmp) / "timeline.jsonl"
        argv = [sys.executable, "-m", "launcher.cli", spec_path, "--local", "--volumes-dir", tmp,
                "--set", f"train.seed={seed}", "--set", "train.log_every=1",
                # train alone: a pipeline's later stages (jobs/ppo.yaml's evaluate) are workers of
                # their own after it, measured by bench/ppo.py's whole command
                "--set", "stages={}"]
        env = {**os.environ, "LAUNCH_TIMELINE": str(timeline)}
        start = time.time()
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env)
        marks: dict[str, float] = {"start": 0.0}
        output = []
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            m = RETURN.search(line)
            if m and float(m[2]) >= SOLVED and "solved" not in marks:
                marks["solved"] = time.time() - start
        if proc.wait() != 0:
            raise SystemExit(f"launch exited with {proc.returncode}:\n{''.join(output)}")
        marks["end"] = time.time() - start
        for row in timeline.read_text().splitlines():
            mark = json.loads(row)
            marks.setdefault(mark["phase"], mark["time"] - start)  # first attempt's marks
        return marks


def verdict(value: float, target: float, unit: str = "s") -> str:
    return "met" if value <= target else f"missed by {value - target:.2f} {unit}"


def span(marks: dict[str, float], a: str, b: str) -> float:
    return marks[b] - marks[a]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 1..N, one run each")
    parser.add_argument("--spec", default="jobs/ppo.yaml")
    args = parser.parse_args()
    bases, paused, runs = [], [], []
    for seed in range(1, args.seeds + 1):
        bases.append(baseline(args.spec, seed))
        runs.append(launch(args.spec, seed))
        paused.append(baseline(args.spec, seed, NO_GC))
        r = runs[-1]
        print(f"seed {seed}: baseline {bases[-1]:.2f} s (collector paused {paused[-1]:.2f} s); "
              f"launch: first step at {r['first_step']:.2f} s, "
              f"return 475 at {r.get('solved', float('nan')):.2f} s, last step {r['last_step_done']:.2f} s, "
              f"exit {r['end']:.2f} s", flush=True)
    med = lambda values: statistics.median(values)  # noqa: E731
    base = med(bases)
    print(f"\nmedians over {args.seeds} distinct seeds (1..{args.seeds}), `launch {args.spec} --local --set 'stages={{}}'` (train alone); "
          f"local: {os.cpu_count()} CPU cores, no GPU, a local directory as the volume, the spec's snapshot; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"  baseline (fresh python: import torch, accelerate; Accelerator(); recipe built)  {base:.2f} s")
    print(f"  the same with the cyclic garbage collector paused, as the worker does         "
          f"{med(paused):.2f} s")
    for label, a, b in PHASES:
        print(f"  {label:<16} {med([span(r, a, b) for r in runs]):6.3f} s")
    first = med([r["first_step"] for r in runs])
    print(f"  first step at {first:.2f} s = baseline {first - base:+.2f} s (target <= +0.50 s: "
          f"{verdict(first - base, 0.5)}); launcher's own part: {first - med(paused):+.2f} s "
          "against the paused baseline")
    for label, a, b in TAIL:
        print(f"  {label:<16} {med([span(r, a, b) for r in runs]):6.3f} s")
    tail = med([span(r, "committed", "end") for r in runs])
    print(f"  exit {tail:.2f} s after the final checkpoint was committed (target <= 0.20 s: "
          f"{verdict(tail, 0.2)})")
    solved = [r["solved"] for r in runs if "solved" in r]
    if solved:
        ratio = med(solved) / base
        print(f"  return 475 at {med(solved):.2f} s = {ratio:.2f} x baseline (target <= 2.2 x: "
              f"{verdict(ratio, 2.2, 'x')}; solved in {len(solved)}/{len(runs)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
