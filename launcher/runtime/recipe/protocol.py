"""The recipe protocol: what the runtime expects of user training code.

A spec names a recipe as ``module:Class`` (``train.recipe``). The runtime drives it in the
same order inside a Modal container and in a local worker:

1. **Stage 1, CPU, before the memory snapshot** -- ``Class(config, seed)``. Build everything
   that needs no GPU: model, optimizer, scheduler, environments, data. No CUDA calls here.
2. **Stage 2, after restore** -- ``recipe.setup(accelerator)``. Move to the device and wrap the
   model/optimizer with ``accelerator.prepare``. The runtime then restores the newest
   checkpoint: ``accelerator.load_state`` brings back model, optimizer, scheduler and RNG
   states, and ``load_state_dict`` gets this process's own recipe state (one file per rank).
3. **Loop** -- ``recipe.train_step(step)`` performs one optimizer update and returns a dict of
   metrics (numbers). ``step`` counts from 0 and is the number of updates done before this one.
4. ``state_dict()`` / ``load_state_dict()`` carry the recipe's own state (environment state,
   episode statistics, its private RNG) so a resumed run is bit-identical. ``state_dict`` returns
   a dict of tensors, numbers and lists (it is loaded with ``torch.load(weights_only=True)``).

Updates are counted one way in every message, log line and checkpoint name: "update 6 of 80" is
the sixth update, done by ``train_step(5)``, and checkpoint ``step-00000006`` holds the state
after it (a loss that turns NaN in ``train_step(5)`` is reported as "in update 6 of 80").

**Validation and the objective** (all optional). ``validate()`` returns a dict of metric names
to numbers measured on held-out data; the runtime calls it in the loop (never in stage 1 or
before ``setup``: the same rules as ``train_step``), on every process as Accelerate expects (each
process may validate its own shard), every ``train.validate_every`` updates and after the last
one, and logs the mean across processes like ``train_step``'s metrics. Leave the model as
``train_step`` expects it (``model.train()`` again after ``model.eval()``). Class attributes
beside ``config_schema``:

- ``objective = ("val/loss", "min")``: a metric ``train_step`` or ``validate`` returns, and
  ``"min"`` or ``"max"``: the progress line shows it with its best so far, the summary its last
  and best values, each checkpoint's manifest records it (``extra.objective``), and
  ``checkpoint.keep_best`` / ``stages.evaluate.checkpoint: best`` go by it.
- ``progress = ("train/loss", "val/loss")``: what the progress line shows besides the objective
  (default: every metric returned). Names may be namespaced (``train/``, ``val/``).

**Data from a pipeline's prepare stage** (``stages.prepare``): the runtime sets
``recipe.data_dir`` (the job's data folder on the volume) after ``__init__`` and before
``setup``. Read the data in ``setup``, never in ``__init__``: stage 1 runs before the memory
snapshot and before the volume reload, so data read there would be stale or missing. Without
a prepare stage the attribute is not set. See docs/pipelines.md.

``config_schema`` is a JSON Schema (draft 2020-12) for ``train.config``; ``launch check``
validates the spec's config against it, and its defaults fill in the config the manifest records.
``model_fields`` names the config keys that change the model's shape; resuming a checkpoint made
with different values is refused, and so is recipe state of another shape (``num_envs`` changed,
say). Other fields may change between runs: on resume the log names each change, and optimizer
hyperparameters (each param group's lr, eps, betas, weight_decay, ...; a scheduler's base_lrs)
come from the freshly built recipe while the optimizer's state comes from the checkpoint. For
that, keep optimizers and LR schedulers as attributes of the recipe (or in a list or dict there).

Breaking the protocol (a missing method, ``train_step`` or ``validate`` returning something other
than a dict of numbers, ``state_dict`` returning something other than a dict, an ``objective`` or
``progress`` attribute of the wrong form) and any exception before an
attempt's first update completes are permanent failures: not retried, and reported with the
file and line in the recipe's code.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable


@runtime_checkable
class Recipe(Protocol):
    config_schema: ClassVar[dict[str, Any]]
    model_fields: ClassVar[tuple[str, ...]]

    def __init__(self, config: dict[str, Any], seed: int) -> None: ...

    def setup(self, accelerator: Any) -> None: ...

    def train_step(self, step: int) -> dict[str, float]: ...

    # Optional: `validate(self) -> dict[str, float]`, and the class attributes
    # `objective: tuple[str, str]` and `progress: tuple[str, ...]` (see above).

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
