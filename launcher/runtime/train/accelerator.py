"""Accelerate's Accelerator, keeping its own list of what it prepared.

`accelerator.save_state` saves the models, optimizers, schedulers and dataloaders a recipe
prepared, and the objects it registered, in that order; Accelerate keeps those lists to
itself. A background checkpoint (`launcher.runtime.checkpoint.snapshot`) must copy exactly those
objects' state, in the training thread, and no public API names them; so this subclass
notes each object as it passes through the public `prepare_*` methods (which `prepare`
calls) and `register_for_checkpointing`, and forgets them in `free_memory`, as Accelerate
does; and whether a save_state pre-hook was registered (a snapshot cannot run it). Nothing
else changes: a recipe gets an Accelerator and uses it as one.

tests/test_async_checkpoint.py checks that a snapshot of these objects writes the very
files `save_state` writes (every digest), so a change in Accelerate's bookkeeping shows.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import accelerate

# Optional packages whose absence Accelerate looks up again at every optimizer step.
ASKED_EVERY_STEP = ("lomo_optim",)


def settle_absent(names: tuple[str, ...] = ASKED_EVERY_STEP) -> None:
    """`AcceleratedOptimizer.step` calls `is_lomo_available()` twice, an uncached
    `importlib.util.find_spec` over every path entry: ~80 µs each here, 32 calls per PPO
    update. For a package that is not installed, `sys.modules[name] = None` records that
    answer where the import system looks first: `find_spec` returns None at once, and an
    import fails as it would anyway. An installed package is left alone."""
    for name in names:
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            sys.modules[name] = None  # type: ignore[assignment]


class Prepared:
    """What `save_state` would save, in its order; each object once, as Accelerate keeps it."""

    def __init__(self) -> None:
        self.models: list[Any] = []
        self.optimizers: list[Any] = []
        self.schedulers: list[Any] = []
        self.dataloaders: list[Any] = []
        self.custom_objects: list[Any] = []
        self.save_hooks = False  # a save_state pre-hook may change what is saved, or add files

    @staticmethod
    def note(found: list[Any], obj: Any) -> Any:
        if not any(obj is seen for seen in found):
            found.append(obj)
        return obj


class Accelerator(accelerate.Accelerator):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.prepared = Prepared()
        settle_absent()
        super().__init__(*args, **kwargs)

    def prepare_model(self, model: Any, *args: Any, **kwargs: Any) -> Any:
        prepared = super().prepare_model(model, *args, **kwargs)
        # save_state saves the model as it was before torch.compile (Accelerate notes it first).
        Prepared.note(self.prepared.models, self.unwrap_model(prepared, keep_torch_compile=False))
        return prepared

    def prepare_optimizer(self, optimizer: Any, *args: Any, **kwargs: Any) -> Any:
        return Prepared.note(self.prepared.optimizers,
                             super().prepare_optimizer(optimizer, *args, **kwargs))

    def prepare_scheduler(self, scheduler: Any) -> Any:
        return Prepared.note(self.prepared.schedulers, super().prepare_scheduler(scheduler))

    def prepare_data_loader(self, data_loader: Any, *args: Any, **kwargs: Any) -> Any:
        return Prepared.note(self.prepared.dataloaders,
                             super().prepare_data_loader(data_loader, *args, **kwargs))

    def register_for_checkpointing(self, *objects: Any) -> None:
        super().register_for_checkpointing(*objects)
        self.prepared.custom_objects.extend(objects)  # as Accelerate does: no de-duplication

    def register_save_state_pre_hook(self, hook: Any) -> Any:
        self.prepared.save_hooks = True
        return super().register_save_state_pre_hook(hook)

    def free_memory(self, *objects: Any) -> Any:
        kept = self.prepared  # registered objects and hooks stay, as in Accelerate
        self.prepared = Prepared()
        self.prepared.custom_objects, self.prepared.save_hooks = kept.custom_objects, kept.save_hooks
        return super().free_memory(*objects)
