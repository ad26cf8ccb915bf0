"""A byte-level GPT on the Python standard library's own source: a three-stage pipeline
(``jobs/lm.yaml``), and the worked example of docs/recipes.md.

- ``prepare`` (a CPU stage): the ``.py`` files under ``sysconfig.get_paths()["stdlib"]`` (every
  machine with Python has them: no download), in sorted order up to ``max_bytes``, each file
  held out for validation or not by a digest of its path (so the split does not move when the
  cap does), saved as byte tensors in the job's data folder with the validation split's unigram
  entropy: the loss of the best model that ignores context, the bar the transformer must beat.
- ``LM`` (the recipe train runs): a small decoder-only transformer (pre-norm blocks, causal
  ``scaled_dot_product_attention``), AdamW with a warm-up plus cosine learning-rate schedule
  (``LambdaLR``), gradient accumulation and mixed precision through Accelerate, and
  ``validate()`` on a fixed set of held-out windows.
- ``evaluate``: validation loss and bits per byte of a checkpoint over the held-out split,
  against the unigram entropy, and a short greedy sample.

Resuming is bit-identical: a micro-batch's windows are drawn by a generator seeded from
(seed, update, micro-batch, process) alone, so the data order needs no state but the update
count; model, optimizer and RNGs come back through Accelerate, and the schedule's position
through ``state_dict``. Each process samples its own contiguous shard of the training bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sysconfig
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from launcher.recipes.configs import schema_beside, with_defaults
from launcher.runtime.pipeline.stages import StageContext

DATA_FILE = "stdlib-bytes.pt"
META_FILE = "stdlib-meta.json"
VOCAB = 256  # bytes
# Folders of the standard library whose files are not the library's source.
SKIPPED = frozenset({"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"})


def _schema(name: str) -> dict[str, Any]:
    return schema_beside(__file__, name)


_with_defaults = with_defaults


# -- prepare ---------------------------------------------------------------------------------


def stdlib_files(root: Path) -> list[Path]:
    """The standard library's own ``.py`` files under `root`, in a fixed (sorted) order."""
    found = (p for p in root.rglob("*.py") if not SKIPPED & set(p.relative_to(root).parts[:-1]))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def held_out(name: str, fraction: float) -> bool:
    """Whether the file `name` (relative to the library) is in the validation split."""
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    return digest / 2**64 < fraction


def as_tensor(data: bytes) -> torch.Tensor:
    # frombuffer refuses an empty buffer
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)


def unigram_entropy(data: torch.Tensor) -> float:
    """Entropy of the bytes' own frequencies, in nats per byte."""
    p = torch.bincount(data.long(), minlength=VOCAB).double() / len(data)
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def prepare(ctx: StageContext) -> dict[str, float]:
    """The standard library's source as train/validation byte tensors in ``ctx.data_dir``."""
    cfg = _with_defaults(_schema("prepare"), ctx.config)
    root = Path(sysconfig.get_paths()["stdlib"])
    splits: dict[str, list[bytes]] = {"train": [], "val": []}
    total = files = 0
    for path in stdlib_files(root):
        if total >= cfg["max_bytes"]:
            break
        text = path.read_bytes()[:cfg["max_bytes"] - total]
        name = path.relative_to(root).as_posix()
        splits["val" if held_out(name, cfg["val_fraction"]) else "train"].append(text)
        total += len(text)
        files += 1
    data = {split: as_tensor(b"".join(parts)) for split, parts in splits.items()}
    if min(len(d) for d in data.values()) < 4096:
        raise ValueError(f"too little source under {root} for a train and a validation split "
                         f"({len(data['train'])} and {len(data['val'])} bytes): raise max_bytes "
                         "or val_fraction")
    entropy = unigram_entropy(data["val"])
    meta = {"stdlib": str(root), "files": files, "train_bytes": len(data["train"]),
            "val_bytes": len(data["val"]), "val_unigram_entropy_nats": entropy}
    ctx.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = ctx.data_dir / f".tmp-{DATA_FILE}"
    try:
        with open(tmp, "wb") as f:  # a file, not a path: a full disk comes back as its OSError
            torch.save(data, f)
        os.replace(tmp, ctx.data_dir / DATA_FILE)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    (ctx.data_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", "utf-8")
    ctx.log(f"prepared {files} files of {root}: {len(data['train'])} training and "
            f"{len(data['val'])} validation bytes; validation unigram entropy {entropy:.4f} "
            f"nats/byte ({entropy / math.log(2):.3f} bits/byte)")
    return {"files": files, "train_bytes": len(data["train"]), "val_bytes": len(data["val"]),
            "val_unigram_entropy_nats": entropy, "val_unigram_entropy_bits": entropy / math.log(2)}


def load_data(data_dir: Path | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if data_dir is None or not (data_dir / DATA_FILE).is_file():
        raise FileNotFoundError(f"no prepared bytes in {data_dir}: the job needs "
                                "stages.prepare (launcher.recipes.lm:prepare)")
    meta = json.loads((data_dir / META_FILE).read_text("utf-8"))
    return torch.load(data_dir / DATA_FILE, weights_only=True), meta


# -- the model -------------------------------------------------------------------------------


class Block(nn.Module):
    """Pre-norm causal self-attention and MLP, each on a residual."""

    def __init__(self, d_model: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(),
                                 nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
                   for z in self.qkv(self.ln1(x)).split(c, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """A decoder-only transformer over bytes: token and position embeddings, blocks, a head."""

    def __init__(self, block_size: int, d_model: int, n_layer: int, n_head: int) -> None:
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"d_model ({d_model}) must be a multiple of n_head ({n_head})")
        self.block_size = block_size
        self.tokens = nn.Embedding(VOCAB, d_model)
        self.positions = nn.Embedding(block_size, d_model)
        self.blocks = nn.Sequential(*(Block(d_model, n_head) for _ in range(n_layer)))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, VOCAB, bias=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                # GPT-2's initialisation; residual projections scaled down by depth
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith(("proj.weight", "2.weight")) else 0.02
                nn.init.normal_(p, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        x = self.tokens(idx) + self.positions(torch.arange(t, device=idx.device))
        return self.head(self.ln_f(self.blocks(x)))


def window_loss(model: nn.Module, chunk: torch.Tensor) -> torch.Tensor:
    """Mean next-byte cross-entropy (nats) of windows `chunk` (batch x block_size+1 bytes)."""
    logits = model(chunk[:, :-1])
    return F.cross_entropy(logits.float().reshape(-1, VOCAB), chunk[:, 1:].reshape(-1))


def windows(data: torch.Tensor, block_size: int, limit: int) -> torch.Tensor:
    """Up to `limit` non-overlapping windows of block_size+1 bytes, spread evenly over `data`
    (every one of them, when `limit` allows)."""
    fit = (len(data) - 1) // block_size
    count = min(limit, fit)
    starts = torch.arange(count) * (fit // count) * block_size
    return data[starts[:, None] + torch.arange(block_size + 1)].long()


# -- train -----------------------------------------------------------------------------------


def schedule(warmup: int, total: int, floor: float) -> Any:
    """Linear warm-up over `warmup` updates, then a cosine from 1 down to `floor` at `total`."""
    def factor(update: int) -> float:
        if update < warmup:
            return (update + 1) / warmup
        progress = min(1.0, (update - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def order_seed(seed: int, update: int, micro: int, process: int) -> int:
    """The seed of one micro-batch's draw: a function of where it is in the run, nothing else."""
    key = f"lm-order:{seed}:{update}:{micro}:{process}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 1


class LM:
    config_schema: ClassVar[dict[str, Any]] = _schema("LM")
    model_fields: ClassVar[tuple[str, ...]] = ("block_size", "d_model", "n_layer", "n_head")
    objective: ClassVar[tuple[str, str]] = ("val/loss", "min")
    progress: ClassVar[tuple[str, ...]] = ("train/loss", "val/loss", "train/lr")

    def __init__(self, config: dict[str, Any], seed: int) -> None:
        self.cfg = cfg = _with_defaults(self.config_schema, config)
        if cfg["torch_threads"]:
            torch.set_num_threads(cfg["torch_threads"])
        self.seed = seed
        with torch.random.fork_rng(devices=[]):  # the initialisation depends on the seed alone
            torch.manual_seed(seed)
            self.model: nn.Module = GPT(cfg["block_size"], cfg["d_model"], cfg["n_layer"],
                                        cfg["n_head"])
        decay = [p for p in self.model.parameters() if p.dim() == 2]
        rest = [p for p in self.model.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg["weight_decay"]},
             {"params": rest, "weight_decay": 0.0}],
            lr=cfg["learning_rate"], betas=(0.9, 0.95))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, schedule(cfg["warmup_steps"], cfg["decay_steps"], cfg["min_lr_fraction"]))
        self.data_dir: Path | None = None  # set by the runtime before setup(): data is read there
        self.accelerator: Any = None
        self.updates = 0

    def setup(self, accelerator: Any) -> None:
        data, self.meta = load_data(self.data_dir)
        self.accelerator = accelerator
        rank, processes = accelerator.process_index, accelerator.num_processes
        size = len(data["train"]) // processes
        self.shard = data["train"][rank * size:(rank + 1) * size]  # this process's own bytes
        if len(self.shard) <= self.cfg["block_size"] + 1:
            raise ValueError(f"{len(self.shard)} training bytes per process: fewer than a window")
        # This process's share of the fixed validation windows.
        self.val = windows(data["val"], self.cfg["block_size"], self.cfg["val_windows"])[rank::processes]
        self.model, self.optimizer = accelerator.prepare(self.model, self.optimizer)

    def _batch(self, update: int, micro: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(
            order_seed(self.seed, update, micro, self.accelerator.process_index))
        block = self.cfg["block_size"]
        starts = torch.randint(0, len(self.shard) - block - 1, (self.cfg["batch_size"],), generator=g)
        return self.shard[starts[:, None] + torch.arange(block + 1)].long().to(self.accelerator.device)

    def train_step(self, step: int) -> dict[str, float]:
        acc = self.accelerator
        self.model.train()
        total = torch.zeros((), device=acc.device)
        micros = acc.gradient_accumulation_steps
        for micro in range(micros):
            with acc.accumulate(self.model):
                loss = window_loss(self.model, self._batch(step, micro))
                acc.backward(loss)
                total += loss.detach()
                if acc.sync_gradients and self.cfg["grad_clip"]:
                    acc.clip_grad_norm_(self.model.parameters(), self.cfg["grad_clip"])
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
        lr = self.scheduler.get_last_lr()[0]  # the rate this update used
        self.scheduler.step()  # once per update, whatever the process count
        self.updates = step + 1
        tokens = micros * self.cfg["batch_size"] * self.cfg["block_size"] * acc.num_processes
        return {"train/loss": (total / micros).item(), "train/lr": lr, "train/tokens": float(tokens)}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean loss over the fixed held-out windows, gathered from every process."""
        acc = self.accelerator
        self.model.eval()
        sums = torch.zeros(2, dtype=torch.float64, device=acc.device)
        for chunk in self.val.split(self.cfg["batch_size"]):
            loss = window_loss(self.model, chunk.to(acc.device))
            sums += torch.tensor([loss.item() * len(chunk), len(chunk)], dtype=torch.float64,
                                 device=acc.device)
        self.model.train()
        if acc.num_processes > 1:
            sums = acc.reduce(sums, reduction="sum")
        loss = float(sums[0] / sums[1])
        return {"val/loss": loss, "val/bpb": loss / math.log(2)}

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        restored = dict(state["scheduler"])
        restored["base_lrs"] = list(self.scheduler.base_lrs)  # a changed learning rate applies
        restored.pop("_last_lr", None)
        self.scheduler.load_state_dict(restored)
        self.scheduler._last_lr = [  # type: ignore[attr-defined]
            base * f(self.scheduler.last_epoch) for base, f in
            zip(self.scheduler.base_lrs, self.scheduler.lr_lambdas)]
        self.updates = int(state["updates"])


# -- evaluate --------------------------------------------------------------------------------


@torch.no_grad()
def greedy(model: nn.Module, prompt: bytes, count: int, device: Any) -> bytes:
    idx = torch.tensor([list(prompt)], dtype=torch.long, device=device)
    block = model.block_size
    for _ in range(count):
        logits = model(idx[:, -block:])[:, -1]
        idx = torch.cat([idx, logits.argmax(-1, keepdim=True)], dim=1)
    return bytes(idx[0].tolist())


@torch.no_grad()
def evaluate(ctx: StageContext) -> dict[str, float]:
    """Validation loss and bits per byte of the checkpoint over the held-out split, against
    the split's unigram entropy, and a greedy sample from a prompt."""
    cfg = _with_defaults(_schema("evaluate"), ctx.config)
    data, meta = load_data(ctx.data_dir)
    device = ctx.accelerator.device
    model = ctx.accelerator.unwrap_model(ctx.recipe.model)
    model.eval()
    chunks = windows(data["val"], model.block_size, cfg["max_windows"])
    total = 0.0
    with ctx.accelerator.autocast():  # the unwrapped model runs in the job's precision too
        for chunk in chunks.split(64):
            total += window_loss(model, chunk.to(device)).item() * len(chunk)
        sample = greedy(model, cfg["prompt"].encode(), cfg["sample_bytes"], device)
    loss = total / len(chunks)
    entropy = meta["val_unigram_entropy_nats"]
    below = 100 * (1 - loss / entropy)
    ctx.log(f"validation loss {loss:.4f} nats/byte ({loss / math.log(2):.3f} bits/byte) over "
            f"{len(chunks) * model.block_size} held-out bytes at step {ctx.checkpoint_step}; "
            f"unigram entropy {entropy:.4f} nats/byte ({entropy / math.log(2):.3f} bits/byte): "
            f"{below:.1f}% below")
    ctx.log(f"greedy sample: {sample.decode('utf-8', 'replace')!r}")
    return {"val_loss": loss, "val_bits_per_byte": loss / math.log(2),
            "unigram_entropy_nats": entropy, "below_unigram_pct": below,
            "val_bytes": len(chunks) * model.block_size}
