"""Load a checkpoint's tensors and compare two of them exactly (for resume tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file


def load_checkpoint(path: Path) -> dict[str, Any]:
    state: dict[str, Any] = {"model": load_file(str(path / "model.safetensors"))}
    for name in ("optimizer.bin", "recipe-0.pt"):
        if (path / name).is_file():
            state[name] = torch.load(path / name, weights_only=False)
    return state


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Paths at which two nested states differ (tensors compared bit for bit)."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        same = a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
        return [] if same else [where]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where} keys {sorted(map(str, a))} != {sorted(map(str, b))}"]
        return [d for k in a for d in differences(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where} length"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [where]
