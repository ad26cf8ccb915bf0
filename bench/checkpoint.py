"""How long training stalls for a checkpoint: written in the loop, or in the background.

Run: python bench/checkpoint.py [--rounds 3] [--every 4] [--checkpoints 3] [--layers 24] [--threads 1]

A stack of Linear layers (24 x 2048 x 2048: about 100 M parameters, 0.4 GB; with Adam's two
moments 1.2 GB of state) trains through the real runtime: a `Session` runs stage 1, stage 2
and `train` with the spec's cadence and the same checkpoint manager `launch` uses, on a local
directory as the volume. Rounds alternate `checkpoint.async: false` and `true`. Training uses
one torch thread by default, leaving the other cores to the writer, as GPU training leaves
the CPU (`--threads 0`: torch's default, every core).

Per checkpoint, from the runtime's own `checkpoint` events: the stall (how long the training
loop waited: the whole save in the loop; the copy to host memory, plus any wait for the write
before, in the background) and the time to write, fsync, publish and commit. Also the wait
for the last write at the end of the run, and the run's training time.
Target: the stall in the background <= 10% of the stall in the loop.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from launcher.load import load_spec  # noqa: E402
from launcher.runtime.events import PREFIX  # noqa: E402
from launcher.runtime.lifecycle.container import run_container  # noqa: E402
from launcher.runtime.storage.volume import LocalVolume  # noqa: E402
from launcher.runtime.train.session import Session  # noqa: E402


def spec_file(folder: Path, background: bool, every: int, steps: int, layers: int,
              threads: int) -> Path:
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "name": "checkpoint-bench",
        "checkpoint": {"volume": "bench", "every_steps": every, "every": None, "keep_last": 2,
                       "async": background},
        "train": {"recipe": "stack_recipe:Stack", "steps": steps, "log_every": steps,
                  "tracker": "none", "config": {"layers": layers, "threads": threads}},
    }, sort_keys=False))
    return path


def run(background: bool, every: int, steps: int, layers: int, threads: int) -> dict[str, Any]:
    """One run in this process; the runtime's events and its result."""
    with tempfile.TemporaryDirectory(dir=ROOT / ".launch") as tmp:
        folder = Path(tmp)
        spec = load_spec(spec_file(folder, background, every, steps, layers, threads)).spec
        # The volume's committed folder and this run's working copy of it, as a local worker has.
        committed, work = folder / "volume", folder / "work"
        os.environ.update({"LAUNCH_EVENTS": "1", "LAUNCH_PROCESSES": "1", "LAUNCH_VOLUME": str(committed),
                           "LAUNCH_CHECKPOINT_DIR": str(work), "LAUNCH_RUN_DIR": str(folder / "run")})
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            volume = LocalVolume(committed, work)
            session = Session(spec.to_dict(), volume=volume)
            result = run_container(session, volumes=(volume,))
        del session
        gc.collect()
        if result.get("status") != "finished":
            raise SystemExit(f"the run failed: {result}\n{err.getvalue()}")
        events = [json.loads(line[len(PREFIX):]) for line in out.getvalue().splitlines()
                  if line.startswith(PREFIX)]
        saves = [e for e in events if e["event"] == "checkpoint"]
        memory = next((line for line in err.getvalue().splitlines() if "MiB of host memory" in line), "")
        return {"saves": saves, "result": result, "memory": memory}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="pairs of runs (loop, background)")
    parser.add_argument("--every", type=int, default=4, help="updates between checkpoints")
    parser.add_argument("--checkpoints", type=int, default=3, help="checkpoints per run")
    parser.add_argument("--layers", type=int, default=24, help="2048 x 2048 Linear layers")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for training (0: torch's default); 1 leaves a core "
                             "to the writer, as a GPU leaves the CPU")
    args = parser.parse_args()
    (ROOT / ".launch").mkdir(exist_ok=True)
    steps = args.every * args.checkpoints
    found: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for round_ in range(1, args.rounds + 1):
        for background in (False, True):
            figures = run(background, args.every, steps, args.layers, args.threads)
            found[background].append(figures)
            stalls = ", ".join(f"{s['stall']:.3f}" for s in figures["saves"])
            print(f"round {round_}, {'background' if background else 'in the loop'}: stalls "
                  f"{stalls} s; training {figures['result']['seconds']:.1f} s for {steps} updates",
                  flush=True)
    params = args.layers * (2048 * 2048 + 2048)
    print(f"\n{args.layers} x Linear(2048, 2048) = {params / 1e6:.1f} M parameters, Adam "
          f"({3 * 4 * params / 2**30:.2f} GiB of model and optimizer state); a checkpoint every "
          f"{args.every} updates, {args.checkpoints} per run, {args.rounds} runs each; "
          f"local: CPU ({os.cpu_count()} cores, training on {args.threads or 'all'}), local disk, "
          f"load average {os.getloadavg()[0]:.2f}")
    med = statistics.median
    summary = {}
    for background, label in ((False, "in the loop  "), (True, "in background")):
        runs = found[background]
        stall = med(s["stall"] for r in runs for s in r["saves"])
        write = med(s["seconds"] for r in runs for s in r["saves"])
        end = med(r["result"]["checkpoint_seconds"] - sum(s["stall"] for s in r["saves"]) for r in runs)
        train = med(r["result"]["seconds"] for r in runs)
        summary[background] = stall
        print(f"  {label} stall per checkpoint {stall:7.3f} s (median); save to commit {write:6.2f} s; "
              f"wait for the last write at the end {end:5.2f} s; training {train:6.1f} s")
    print(f"  {found[True][0]['memory'].replace('[launch] ', '')}")
    ratio = summary[True] / summary[False]
    print(f"  background stall = {100 * ratio:.1f}% of the stall in the loop (target <= 10%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
