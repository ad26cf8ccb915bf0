"""A checkpoint taken in two halves: copied in the training thread, written in another.

`take` (training thread, between two updates) copies what `accelerator.save_state` would
save into host memory, so training can go on while another thread writes it:

- the model weights (`get_state_dict`) and optimizer states, the large part, into host
  buffers kept from one checkpoint to the next (pinned when CUDA is present, so the copy
  from the device runs at full speed): one more copy of the model and optimizer state;
- the small files (RNG states, schedulers, samplers, the grad scaler, registered objects),
  written at once by Accelerate's own `save_accelerator_state` and `save_custom_state` into
  a staging folder: the RNG states are those of this moment, as `save_state` takes them.

`Snapshot.write` (writer thread) writes the weights and optimizer states through the same
`save_accelerator_state`, so names and formats are `save_state`'s and `load_state` reads the
folder as its own; that call also writes RNG states, of the writer's moment, which the staged
files then replace.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.checkpointing import save_accelerator_state, save_custom_state
from accelerate.utils import DistributedType

from launcher.runtime import events
from launcher.runtime.train.accelerator import Accelerator


def supported(acc: Any) -> bool:
    """One process, no sharding engine, and no save hook that would expect to see the files:
    what a snapshot copies is then exactly what `save_state` saves."""
    return (isinstance(acc, Accelerator) and acc.num_processes == 1
            and acc.distributed_type == DistributedType.NO and not acc.prepared.save_hooks)


class HostCopies:
    """Host buffers for the copies, reused while shapes and dtypes stay the same."""

    def __init__(self, pin: bool) -> None:
        self.pin = pin
        self.buffers: dict[tuple[Hashable, ...], torch.Tensor] = {}

    @property
    def nbytes(self) -> int:
        return sum(b.untyped_storage().nbytes() for b in self.buffers.values())

    def copy(self, value: Any, key: tuple[Hashable, ...]) -> Any:
        """`value` (tensors in dicts, lists and tuples) with every tensor copied to the host.
        Tensors that share memory (tied weights) share one copy, as safetensors expects."""
        shared: dict[tuple[Any, ...], torch.Tensor] = {}
        copied = self._copy(value, key, shared)
        if any(device.type == "cuda" for *_, device in shared):
            torch.cuda.synchronize()  # the non-blocking copies are done before training goes on
        return copied

    def _copy(self, value: Any, key: tuple[Hashable, ...], shared: dict[tuple[Any, ...], torch.Tensor]) -> Any:
        if isinstance(value, torch.Tensor):
            same = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape),
                    value.stride(), value.dtype, value.device)
            if same not in shared:
                buffer = shared[same] = self._buffer(key, value)
                buffer.copy_(value.detach(), non_blocking=buffer.is_pinned())
            return shared[same]
        if isinstance(value, dict):
            return type(value)((k, self._copy(v, (*key, k), shared)) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            items = [self._copy(v, (*key, i), shared) for i, v in enumerate(value)]
            # A named tuple takes its fields one by one; a list or tuple, an iterable.
            return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
        return copy.deepcopy(value)

    def _buffer(self, key: tuple[Hashable, ...], like: torch.Tensor) -> torch.Tensor:
        found = self.buffers.get(key)
        if found is None or found.shape != like.shape or found.dtype != like.dtype:
            found = self.buffers[key] = self._allocate(like)
        return found

    def _allocate(self, like: torch.Tensor) -> torch.Tensor:
        if self.pin:
            try:
                return torch.empty(like.shape, dtype=like.dtype, pin_memory=True)
            except RuntimeError as exc:  # a locked-memory limit: pageable memory works, slower
                self.pin = False
                events.log(f"warning: cannot pin host memory for checkpoint copies ({exc}); "
                           "using pageable memory")
        return torch.empty(like.shape, dtype=like.dtype)


class _Frozen:
    """Stands in for an optimizer whose state was copied: `save_accelerator_state` asks each
    optimizer for its `state_dict()`, and gets the copy."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def state_dict(self) -> dict[str, Any]:
        return self.state


@dataclass
class Snapshot:
    weights: list[Any]
    optimizers: list[dict[str, Any]]
    staged: Path  # the small files, written in the training thread
    process_index: int
    step: int

    def write(self, folder: Path) -> None:
        """Into `folder`: the files `save_state` writes, from the copies (writer thread)."""
        save_accelerator_state(str(folder), self.weights, [_Frozen(s) for s in self.optimizers],
                               [], [], self.process_index, self.step, None, safe_serialization=True)
        for item in self.staged.iterdir():
            shutil.move(str(item), folder / item.name)  # the snapshot's RNG states win
        self.staged.rmdir()

    def discard(self) -> None:
        shutil.rmtree(self.staged, ignore_errors=True)


def take(acc: Accelerator, copies: HostCopies, staging: Path) -> Snapshot:
    """Copy the state `acc.save_state` would save, now (training thread)."""
    found = acc.prepared
    weights = [copies.copy(acc.get_state_dict(m, unwrap=False), ("model", i))
               for i, m in enumerate(found.models)]
    optimizers = [copies.copy(o.state_dict(), ("optimizer", i)) for i, o in enumerate(found.optimizers)]
    staged = Path(tempfile.mkdtemp(prefix="snapshot-", dir=staging))
    save_accelerator_state(str(staged), [], [], found.schedulers, found.dataloaders,
                           acc.process_index, acc.step, acc.scaler, safe_serialization=True)
    for i, obj in enumerate(found.custom_objects):
        save_custom_state(obj, str(staged), i)
    return Snapshot(weights, optimizers, staged, acc.process_index, acc.step)
