"""Handwritten digits, a three-stage pipeline example (``jobs/digits.yaml``).

- ``prepare`` (a CPU stage): scikit-learn's bundled 8x8 digits (``load_digits``, shipped inside
  the package: no download), split into train and test sets (stratified, seeded), scaled by
  the training set's mean and standard deviation, and saved as tensors in the job's data folder.
- ``Digits`` (the recipe train runs): a small convolutional classifier trained through
  Accelerate. It builds the model in ``__init__`` (stage 1, before the memory snapshot) and
  reads the prepared data in ``setup`` (stage 2, after the volume reload), from ``data_dir``,
  which the runtime sets before calling ``setup``. It holds out ``val_fraction`` of the
  training images (the same ones for a seed) for ``validate``, whose accuracy is its objective:
  ``checkpoint.keep_best`` keeps the best checkpoints by it.
- ``evaluate``: the test accuracy of the newest checkpoint (``stages.evaluate.checkpoint:
  best``: of the best by validation accuracy).

Every source of randomness is the recipe's own generator (minibatch order), saved in
``state_dict`` with the position in the current epoch, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from launcher.recipes.configs import schema_beside, with_defaults
from launcher.runtime.pipeline.stages import StageContext

DATA_FILE = "digits.pt"
CLASSES = 10
# Keeps the minibatch generator's stream apart from the model's initialisation for one seed.
ORDER_SEED_OFFSET = 1 << 32
SPLIT_SEED_OFFSET = 2 << 32  # and the validation split's


def _schema(name: str) -> dict[str, Any]:
    return schema_beside(__file__, name)


_with_defaults = with_defaults


# -- prepare ---------------------------------------------------------------------------------


def prepare(ctx: StageContext) -> dict[str, float]:
    """Split, scale and save the digits as tensors in ``ctx.data_dir``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    cfg = _with_defaults(_schema("prepare"), ctx.config)
    digits = load_digits()
    images = digits.images.astype("float32") / 16.0  # pixel intensities 0..16
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=cfg["test_fraction"], stratify=digits.target,
        random_state=ctx.seed)
    mean, std = float(x_train.mean()), float(x_train.std())  # the training set's only
    data = {
        "x_train": torch.from_numpy((x_train - mean) / std).unsqueeze(1),
        "y_train": torch.from_numpy(y_train).long(),
        "x_test": torch.from_numpy((x_test - mean) / std).unsqueeze(1),
        "y_test": torch.from_numpy(y_test).long(),
    }
    ctx.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = ctx.data_dir / f".tmp-{DATA_FILE}"
    try:
        with open(tmp, "wb") as f:  # a file, not a path: a full disk comes back as its OSError
            torch.save(data, f)
        os.replace(tmp, ctx.data_dir / DATA_FILE)  # never a half-written file under the real name
    except BaseException:
        tmp.unlink(missing_ok=True)  # nor a half-written one left to be committed
        raise
    ctx.log(f"prepared {len(y_train)} training and {len(y_test)} test images in {ctx.data_dir}")
    return {"train_examples": len(y_train), "test_examples": len(y_test), "pixel_mean": mean,
            "pixel_std": std}


def load_data(data_dir: Path | None) -> dict[str, torch.Tensor]:
    if data_dir is None or not (data_dir / DATA_FILE).is_file():
        raise FileNotFoundError(f"no prepared digits in {data_dir}: the job needs "
                                "stages.prepare (launcher.recipes.digits:prepare)")
    return torch.load(data_dir / DATA_FILE, weights_only=True)


# -- train -----------------------------------------------------------------------------------


class ConvNet(nn.Module):
    """Two 3x3 convolutions, a 2x2 max-pool and two linear layers, for 1x8x8 images."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * channels * 16, hidden), nn.ReLU(),
                                  nn.Linear(hidden, CLASSES))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


class Digits:
    config_schema: ClassVar[dict[str, Any]] = _schema("Digits")
    model_fields: ClassVar[tuple[str, ...]] = ("channels", "hidden")
    objective: ClassVar[tuple[str, str]] = ("val/accuracy", "max")
    progress: ClassVar[tuple[str, ...]] = ("loss", "val/loss")

    def __init__(self, config: dict[str, Any], seed: int) -> None:
        self.cfg = _with_defaults(self.config_schema, config)
        if self.cfg["torch_threads"]:
            torch.set_num_threads(self.cfg["torch_threads"])
        self.seed = seed
        with torch.random.fork_rng(devices=[]):  # the initialisation depends on the seed alone
            torch.manual_seed(seed)
            self.model: nn.Module = ConvNet(self.cfg["channels"], self.cfg["hidden"])
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg["learning_rate"])
        self.generator = torch.Generator().manual_seed(seed + ORDER_SEED_OFFSET)
        self.data_dir: Path | None = None  # set by the runtime before setup(): data is read there
        self.order = torch.empty(0, dtype=torch.int64)
        self.position = 0
        self.epoch = 0
        self.accelerator: Any = None

    def setup(self, accelerator: Any) -> None:
        data = load_data(self.data_dir)
        # The held-out images: a seeded draw, the same on every process and every attempt.
        split = torch.Generator().manual_seed(self.seed + SPLIT_SEED_OFFSET)
        order = torch.randperm(len(data["y_train"]), generator=split)
        held = max(1, round(self.cfg["val_fraction"] * len(order)))
        val, train = order[:held], order[held:]
        self.x = data["x_train"][train].to(accelerator.device)
        self.y = data["y_train"][train].to(accelerator.device)
        self.x_val = data["x_train"][val].to(accelerator.device)
        self.y_val = data["y_train"][val].to(accelerator.device)
        self.accelerator = accelerator
        self.model, self.optimizer = accelerator.prepare(self.model, self.optimizer)
        # Each process draws its own minibatches (a checkpoint, if any, replaces this state).
        self.generator.manual_seed(self.seed + ORDER_SEED_OFFSET + accelerator.process_index)

    def _next_batch(self) -> torch.Tensor:
        if self.position >= len(self.order):
            self.order = torch.randperm(len(self.y), generator=self.generator)
            self.position = 0
            self.epoch += 1
        batch = self.order[self.position:self.position + self.cfg["batch_size"]]
        self.position += len(batch)
        return batch.to(self.x.device)

    def train_step(self, step: int) -> dict[str, float]:
        index = self._next_batch()
        self.model.train()
        logits = self.model(self.x[index])
        loss = nn.functional.cross_entropy(logits, self.y[index])
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        self.optimizer.step()
        accuracy = (logits.argmax(1) == self.y[index]).float().mean()
        return {"loss": loss.item(), "accuracy": accuracy.item(), "epoch": float(self.epoch)}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Accuracy and loss on the held-out images (every process: all of them)."""
        model = self.accelerator.unwrap_model(self.model)
        model.eval()
        logits = model(self.x_val)
        model.train()
        return {"val/accuracy": (logits.argmax(1) == self.y_val).float().mean().item(),
                "val/loss": nn.functional.cross_entropy(logits, self.y_val).item()}

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "order": self.order.clone(),
                "position": self.position, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"].clone()
        self.position = int(state["position"])
        self.epoch = int(state["epoch"])


# -- evaluate --------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(ctx: StageContext) -> dict[str, float]:
    """Test accuracy and loss of the checkpoint loaded (the newest, or the best by validation
    accuracy with `checkpoint: best`), on the held-out test set."""
    data = load_data(ctx.data_dir)
    device = ctx.accelerator.device
    model = ctx.accelerator.unwrap_model(ctx.recipe.model)
    model.eval()
    logits = model(data["x_test"].to(device))
    labels = data["y_test"].to(device)
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    ctx.log(f"test accuracy {accuracy:.4f} at step {ctx.checkpoint_step} "
            f"({len(labels)} test images)")
    return {"test_accuracy": accuracy, "test_loss": nn.functional.cross_entropy(logits, labels).item(),
            "test_examples": len(labels)}
