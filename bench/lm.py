"""The language model's training throughput under `launch jobs/lm.yaml --local` against the same
model and data in a plain PyTorch loop, and the checkpoint stall, on this machine's CPU.

Run: python bench/lm.py [--seeds 0 1 2] [--updates 200]
For each seed (distinct seeds: distinct initialisations and data orders), side by side (started
together, one torch thread each, so that on a shared machine both see the same load):
- launcher: `launch jobs/lm.yaml --local` with train.seed=SEED, its model and data as the spec
  says (prepare's output), logging every 10 updates and checkpointing every 50 (as the job does: in the background).
  Its steady state is the median rate over the logged 10-update intervals after the first that
  hold no checkpoint, timed as each progress line arrives; the stall is the summary's checkpoint
  seconds over the checkpoints written.
- plain: the same GPT, optimizer, schedule, gradient accumulation, batches (the recipe's own
  functions), threads (train.config.torch_threads) and precision (fp32), in a loop with no
  Accelerate, no launcher, no checkpoints, timed in the same 10-update intervals after the first.
- paired: the recipe's train_step through an Accelerator and the plain step, alternated update
  by update in one process (60 updates), the ratio of their times: what the step costs through
  Accelerate, measured so that load from other work moves both alike; and whether the two end
  with the same parameters.
Prints each run and the medians: tokens (bytes) per second and their ratio (target >= 0.97),
and the stall per checkpoint. The machine may be shared: its load average is printed too.
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

import yaml

ROOT = Path(__file__).resolve().parent.parent
JOB = ROOT / "jobs" / "lm.yaml"
UPDATE = re.compile(r"\[launch\] update (\d+) of \d+")
CHECKPOINTS = re.compile(r"checkpoints\s+(\d+) written .*?\(([\d.]+) s")
LOG_EVERY, SAVE_EVERY = 10, 50

PLAIN = r'''
import json, sys, time
from pathlib import Path
import torch
from launcher.recipes import lm
from launcher.runtime.pipeline.stages import StageContext

cfg_in, seed, updates, accumulate, data_dir = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
lm.prepare(StageContext(stage="prepare", config=json.loads(sys.argv[6]), seed=seed, data_dir=data_dir, log=lambda _: None))
recipe = lm.LM(cfg_in, seed)  # only its model, optimizer and schedule, built as the recipe builds them
cfg, model, optimizer, scheduler = recipe.cfg, recipe.model, recipe.optimizer, recipe.scheduler
train = lm.load_data(data_dir)[0]["train"]
block = cfg["block_size"]
times = []
for update in range(updates):
    model.train()
    for micro in range(accumulate):
        g = torch.Generator().manual_seed(lm.order_seed(seed, update, micro, 0))
        starts = torch.randint(0, len(train) - block - 1, (cfg["batch_size"],), generator=g)
        loss = lm.window_loss(model, train[starts[:, None] + torch.arange(block + 1)].long())
        (loss / accumulate).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    loss.item()
    if (update + 1) % %(log)d == 0:
        times.append(time.perf_counter())
print(json.dumps({"times": times, "threads": torch.get_num_threads()}))
'''.replace("%(log)d", str(LOG_EVERY))


PAIRED = r'''
import json, statistics, sys, time
from pathlib import Path
import torch
from launcher.recipes import lm
from launcher.runtime.pipeline.stages import StageContext
from launcher.runtime.train.accelerator import Accelerator

cfg_in, seed, updates, accumulate, data_dir = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
lm.prepare(StageContext(stage="prepare", config=json.loads(sys.argv[6]), seed=seed, data_dir=data_dir, log=lambda _: None))
acc = Accelerator(gradient_accumulation_steps=accumulate, cpu=True, mixed_precision="no")
recipe = lm.LM(cfg_in, seed)
recipe.data_dir = data_dir
recipe.setup(acc)
plain = lm.LM(cfg_in, seed)
cfg, train, block = recipe.cfg, recipe.shard, recipe.cfg["block_size"]

def plain_step(update):
    plain.model.train()
    for micro in range(accumulate):
        g = torch.Generator().manual_seed(lm.order_seed(seed, update, micro, 0))
        starts = torch.randint(0, len(train) - block - 1, (cfg["batch_size"],), generator=g)
        loss = lm.window_loss(plain.model, train[starts[:, None] + torch.arange(block + 1)].long())
        (loss / accumulate).backward()
    torch.nn.utils.clip_grad_norm_(plain.model.parameters(), cfg["grad_clip"])
    plain.optimizer.step()
    plain.optimizer.zero_grad(set_to_none=True)
    plain.scheduler.step()
    loss.item()

ratios = []
for update in range(updates):
    t0 = time.perf_counter(); recipe.train_step(update)
    t1 = time.perf_counter(); plain_step(update)
    t2 = time.perf_counter()
    if update >= 5:
        ratios.append((t2 - t1) / (t1 - t0))
same = all(torch.equal(a, b) for a, b in zip(recipe.model.parameters(), plain.model.parameters()))
print(json.dumps({"ratio": statistics.median(ratios), "same": same}))
'''


def paired(seed: int, updates: int, spec: dict) -> dict[str, float]:
    """The recipe's train_step through Accelerate and the plain step, update by update in one
    process: a ratio that load from other work on the machine moves little."""
    train = spec["train"]
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.run(
            [sys.executable, "-c", PAIRED, json.dumps(train["config"]), str(seed), str(updates),
             str(train.get("gradient_accumulation_steps", 1)), data,
             json.dumps(spec["stages"]["prepare"].get("config", {}))],
            cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"seed {seed}: the paired loop failed\n{proc.stderr}")
    return json.loads(proc.stdout.splitlines()[-1])


def tokens_per_update(train: dict) -> int:
    cfg = train["config"]
    return cfg["batch_size"] * cfg["block_size"] * train.get("gradient_accumulation_steps", 1)


def launcher_run(seed: int, updates: int, per_update: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as volumes:
        argv = [sys.executable, "-m", "launcher.cli", str(JOB), "--local", "--volumes-dir", volumes]
        for item in (f"train.seed={seed}", f"train.steps={updates}", f"train.log_every={LOG_EVERY}",
                     f"checkpoint.every_steps={SAVE_EVERY}", "checkpoint.every=4h",
                     "stages.evaluate.config.max_windows=16", "stages.evaluate.config.sample_bytes=8"):
            argv += ["--set", item]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(argv, cwd=volumes, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env)
        seen: dict[int, float] = {}
        output = []
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.perf_counter()
            output.append(line)
            found = UPDATE.search(line)
            if found:
                seen[int(found[1])] = now
        if proc.wait() != 0:
            raise SystemExit(f"seed {seed}: launch exited with {proc.returncode}\n{''.join(output)}")
    text = "".join(output)
    steps = sorted(seen)[1:]  # from the end of the first logged interval: warm-up left out
    rates = [per_update * (b - a) / (seen[b] - seen[a]) for a, b in zip(steps, steps[1:])
             if not any(a < s <= b for s in range(SAVE_EVERY, updates + 1, SAVE_EVERY))]
    found = CHECKPOINTS.search(text)
    assert found is not None and rates, text
    return {"tokens_s": statistics.median(rates), "stall_s": float(found[2]) / max(1, int(found[1])),
            "checkpoints": int(found[1])}


def plain_start(seed: int, updates: int, spec: dict, data: str) -> subprocess.Popen:
    train = spec["train"]
    prep = spec["stages"]["prepare"].get("config", {})
    return subprocess.Popen(
        [sys.executable, "-c", PLAIN, json.dumps(train["config"]), str(seed), str(updates),
         str(train.get("gradient_accumulation_steps", 1)), data, json.dumps(prep)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def plain_result(seed: int, proc: subprocess.Popen, spec: dict) -> dict[str, float]:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"seed {seed}: the plain loop failed\n{err}")
    train = spec["train"]
    result = json.loads(out.splitlines()[-1])
    times = result["times"]
    per_update = tokens_per_update(train)
    rates = [per_update * LOG_EVERY / (b - a) for a, b in zip(times, times[1:])]
    return {"tokens_s": statistics.median(rates), "threads": result["threads"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--updates", type=int, default=200)
    args = parser.parse_args()
    spec = yaml.safe_load(JOB.read_text("utf-8"))
    train = spec["train"]
    per_update = tokens_per_update(train)
    rows, pairs = [], []
    for seed in args.seeds:
        # Side by side, started together: on a machine others share too, both see the same load.
        with tempfile.TemporaryDirectory() as data:
            started = plain_start(seed, args.updates, spec, data)
            launched = launcher_run(seed, args.updates, per_update)
            plain = plain_result(seed, started, spec)
        pair = paired(seed, min(args.updates, 60), spec)
        pairs.append(pair)
        rows.append((plain, launched))
        print(f"seed {seed}: plain {plain['tokens_s']:,.0f} tokens/s, launcher "
              f"{launched['tokens_s']:,.0f} tokens/s ({launched['tokens_s'] / plain['tokens_s']:.3f}x); "
              f"{launched['checkpoints']} checkpoints, {launched['stall_s'] * 1000:.0f} ms each; "
              f"paired {pair['ratio']:.3f}x, same parameters {pair['same']}",
              flush=True)
    plain_med = statistics.median(p["tokens_s"] for p, _ in rows)
    launch_med = statistics.median(x["tokens_s"] for _, x in rows)
    ratio = statistics.median(x["tokens_s"] / p["tokens_s"] for p, x in rows)
    stall = statistics.median(x["stall_s"] for _, x in rows)
    cfg = train["config"]
    print(f"median over {len(rows)} distinct seeds, {args.updates} updates each, on CPU "
          f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end), "
          f"{rows[0][0]['threads']} torch thread(s), fp32 (mixed_precision {train.get('mixed_precision', 'no')}):")
    print(f"  model         GPT d_model {cfg['d_model']}, {cfg['n_layer']} layers, context "
          f"{cfg['block_size']} bytes; {per_update} tokens (bytes) an update "
          f"({train.get('gradient_accumulation_steps', 1)} micro-batches)")
    print(f"  plain loop    {plain_med:,.0f} tokens/s")
    print(f"  launcher      {launch_med:,.0f} tokens/s; {ratio:.3f}x the plain loop (median of the "
          "seeds' ratios; target >= 0.97)")
    print(f"  paired        the recipe's step through Accelerate {statistics.median(p['ratio'] for p in pairs):.3f}x "
          "the plain step, interleaved update by update in one process (median over the seeds; "
          f"the same parameters after every run: {all(p['same'] for p in pairs)})")
    print(f"  checkpoint    {stall * 1000:.0f} ms stall per checkpoint (the job's background checkpoints: the training thread's copy, "
          f"every {SAVE_EVERY} updates, local disk)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
