"""The same sweep with and without early stopping: `launch SWEEP.yaml --local` over the digits
pipeline, on this machine's CPU, each with fresh volumes.

Run: python bench/sweep.py [--trials 12] [--steps 200] [--parallel 2]
Prints, for early_stop none and median: the updates the trials spent, the wall time of the whole
command (worker processes' start-up included), the best objective (the recipe's own:
validation accuracy on the held-out images, max; trials report it at each validation, every
tenth of the steps, and the median rule judges them there) and the
coordinator's own overhead per trial (ask, report, tell, copies of the study to the volume), as
the sweep's summary reports it. Targets: early stopping spends at least 40 % fewer updates and
finds a best objective within 1 % of the full sweep's; overhead under 50 ms per trial.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^(\d+) +(complete|pruned|failed|running) +([\d.e+-]+|n/a) +(\d+) ", re.MULTILINE)
BEST = re.compile(r"^best: trial \d+ \(\S+\), val/accuracy ([\d.e+-]+)", re.MULTILINE)
OVERHEAD = re.compile(r"^coordinator overhead: ([\d.]+) ms per trial", re.MULTILINE)


def sweep_spec(folder: Path, early_stop: str, trials: int, steps: int, parallel: int) -> Path:
    shutil.copy(ROOT / "jobs/digits.yaml", folder / "digits.yaml")
    body = {"version": 1, "extends": "digits.yaml", "snapshot": "none",
            "train": {"steps": steps, "log_every": max(steps // 10, 1),
                      "validate_every": max(steps // 10, 1), "tracker": "none"},
            "checkpoint": {"every_steps": max(steps // 4, 1)},
            "sweep": {"method": "random", "trials": trials, "parallel": parallel, "seed": 0,
                      "early_stop": early_stop,  # objective: the recipe's (val/accuracy, max)
                      "parameters": {"train.config.learning_rate": {"log_uniform": [1.0e-5, 3.0e-2]},
                                     "train.config.channels": {"choice": [4, 8, 16]}}}}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False), "utf-8")
    return path


def run(early_stop: str, trials: int, steps: int, parallel: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = sweep_spec(folder, early_stop, trials, steps, parallel)
        env = {**os.environ, "LAUNCH_LOCAL_DIR": str(folder / "state")}
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "launcher.cli", str(spec), "--local",
                               "--volumes-dir", str(folder / "volumes")], cwd=folder, env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"early_stop {early_stop}: launch exited with {proc.returncode}\n{proc.stderr[-3000:]}")
    rows = ROW.findall(proc.stderr)
    best, overhead = BEST.search(proc.stderr), OVERHEAD.search(proc.stderr)
    assert len(rows) == trials and best and overhead, proc.stderr[-3000:]
    return {"updates": sum(int(r[3]) for r in rows), "pruned": sum(r[1] == "pruned" for r in rows),
            "wall": wall, "best": float(best[1]), "overhead_ms": float(overhead[1])}


def coordinator_alone(trials: int, reports: int) -> float:
    """ms per trial of the coordinator's own work with no trial running: ask, `reports` reports
    (each with the pruner's decision and a copy of the study to the volume), tell."""
    import optuna

    from launcher.runtime.sweep.journal import StudyStore, open_study

    with tempfile.TemporaryDirectory() as tmp:
        store = StudyStore(Path(tmp) / "own", Path(tmp) / "volume")
        study = open_study(store, "bench", "min", optuna.samplers.RandomSampler(0),
                           optuna.pruners.MedianPruner(n_startup_trials=2))
        space = {"lr": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)}
        start = time.perf_counter()
        for n in range(trials):
            trial = study.ask(space)
            store.publish()
            for step in range(reports):
                trial.report(1.0 / (step + 1) + 0.01 * n, step)
                trial.should_prune()
                store.publish()
            study.tell(trial, 0.5)
            store.publish()
        return 1000 * (time.perf_counter() - start) / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, local disk; "
          f"{args.trials} trials of digits (random search over 2 parameters, seed 0), "
          f"{args.steps} updates each, {args.parallel} at once")
    alone = coordinator_alone(args.trials, 10)
    print(f"coordinator alone (no trial running): {alone:.1f} ms per trial of wall time (ask, 10 "
          f"reports with pruning, tell, 12 copies of the study to the volume; target < 50 ms)")
    results = {mode: run(mode, args.trials, args.steps, args.parallel) for mode in ("none", "median")}
    print(f"{'early_stop':<11}{'updates':>9}{'pruned':>8}{'wall s':>9}{'best val/accuracy':>19}"
          f"{'coordinator CPU ms/trial':>26}")
    for mode, r in results.items():
        print(f"{mode:<11}{r['updates']:>9}{r['pruned']:>8}{r['wall']:>9.1f}{r['best']:>19.4f}"
              f"{r['overhead_ms']:>26.1f}")
    full, early = results["none"], results["median"]
    saved = 1 - early["updates"] / full["updates"]
    gap = abs(early["best"] - full["best"]) / abs(full["best"])
    print(f"early stopping spent {saved:.0%} fewer updates (target >= 40%: "
          f"{'met' if saved >= 0.4 else 'NOT met'}); its best val/accuracy is {gap:.1%} from the full sweep's "
          f"(target within 1%: {'met' if gap <= 0.01 else 'NOT met'})")


if __name__ == "__main__":
    main()
