"""How long `launch runs --local` takes over many recorded runs.

Run: python bench/runs.py [--runs 1000] [--jobs 10] [--rounds 5]

Writes RUNS records (each as a local run writes it: the resolved spec, attempts, metrics,
checkpoints) spread over JOBS jobs on one local volume in a temporary folder, with a fifth of
them `running` under a process that is gone (each one's liveness is checked), then times a
fresh `launch runs --local --all --json` process end to end (interpreter start included) and
the same listing in this process. Prints the machine, the figures and the target: < 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from launcher.runtime.runs.record import Attempt, RunRecord, new_run_id  # noqa: E402
from launcher.runtime.runs.recorder import Recorder  # noqa: E402


def write_runs(volume: Path, count: int, jobs: int) -> None:
    from launcher.load import load_spec

    spec = load_spec(ROOT / "jobs/ppo.yaml").spec
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    start = time.time() - count * 60
    for i in range(count):
        job = f"job-{i % jobs}"
        record = RunRecord(run=new_run_id(start + i * 60), job=job, volume=volume.name,
                           backend="local", started=start + i * 60, spec=spec.to_dict(),
                           spec_hash=spec.hash, gpu="H100", prices={"train": 0.0},
                           coordinator={"host": platform.node(), "pid": gone.pid},
                           code={"commit": f"{i:040x}", "dirty": False})
        rec = Recorder(volume / job, record)
        rec.set_objective("val/loss", "min")
        record.attempts.append(Attempt("train", 1, record.started, record.started + 30, "finished"))
        rec.metrics(300, {"val/loss": 1.0 / (i + 1), "train/loss": 0.5, "sps": 1000.0})
        rec.checkpoint(300, record.started + 30)
        if i % 5:
            rec.end("finished")
        else:
            rec.save()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        volumes = Path(tmp) / "volumes"
        write_runs(volumes / "vol", args.runs, args.jobs)
        size = sum(p.stat().st_size for p in volumes.rglob("run.json"))
        command = [sys.executable, "-m", "launcher.cli", "runs", "--local", "--all", "--json",
                   "--volumes-dir", str(volumes)]
        env = {**os.environ, "LAUNCH_LOCAL_DIR": tmp}
        wall, cpu = [], []
        for _ in range(args.rounds):
            began, used = time.perf_counter(), _children_cpu()
            done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp)
            wall.append(time.perf_counter() - began)
            cpu.append(_children_cpu() - used)
            assert done.returncode == 0 and done.stdout.count('"run":') == args.runs, done.stderr
        from launcher.registry import Where, runs

        inside = []
        for _ in range(args.rounds):
            began = time.perf_counter()
            seen = runs([], Where(True, volumes))
            inside.append(time.perf_counter() - began)
        dead = sum(s.status == "dead" for s in seen)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; local disk ({tmp})")
    print(f"{args.runs} distinct runs over {args.jobs} jobs, {size / 2**20:.1f} MiB of records, "
          f"{dead} of them running under a process that is gone (shown dead)")
    print(f"launch runs --local --all --json (a fresh process): median {statistics.median(wall):.3f} s, "
          f"min {min(wall):.3f} s over {args.rounds} rounds; target < 0.5 s")
    print(f"  CPU time of that process (user + system): median {statistics.median(cpu):.3f} s; "
          f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"  of which reading and judging the records: median {statistics.median(inside):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
