"""The run's trackers, through Accelerate: one run of the job is one tracker run, named by its id,
with the resolved spec as its hyperparameters.

TensorBoard writes into the run's own folder (`<logs root>/<run id>/`, runlogs.py), so
`tensorboard --logdir` on the job's logs shows its runs side by side, and a retry or resume of
a run adds its event files to the same folder (one run in TensorBoard). Accelerate's own
`TensorBoardTracker.store_init_configuration` calls `SummaryWriter.add_hparams`, which writes
the hyperparameters into a new subfolder at every call (a run of its own in TensorBoard, apart
from the run's scalars) and an `hparams.yml` into another; `run_tensorboard`'s tracker writes
them into the run's own event file instead, where TensorBoard's HParams dashboard pairs them
with the run's scalars.

W&B (`train.tracker: wandb`): the project is WANDB_PROJECT or the job's name, the run's name
and W&B id are the run's id (a retry resumes the same W&B run), and its files go to the run's
folder unless WANDB_DIR says where: with WANDB_MODE=offline nothing leaves the machine, and the
offline run goes to the volume with the rest of the run's logs (`wandb sync` uploads it later).
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any

from launcher.runtime.failures import PermanentError
from launcher.runtime.runlogs import RunLogs
from launcher.spec.model import JobSpec

Scalar = int | float | str | bool


def run_tensorboard(logs: RunLogs) -> Any:
    """Accelerate's TensorBoard tracker in the run's own folder, its hyperparameters in the
    run's own event file (a class made here: accelerate imports torch, which the CLI that
    imports this package never does)."""
    from accelerate.tracking import TensorBoardTracker, on_main_process

    class RunTensorBoard(TensorBoardTracker):
        @on_main_process
        def start(self) -> None:
            self.run_name = logs.folder.name  # known now, not when the Accelerator was made
            super().start()

        @on_main_process
        def store_init_configuration(self, values: dict[str, Any]) -> None:
            from torch.utils.tensorboard.summary import hparams

            # Only the session's start: without an experiment summary, TensorBoard makes one
            # from every run's hyperparameters and takes every scalar as a metric.
            _, session_start, _ = hparams(values, metric_dict={})
            self.writer.file_writer.add_summary(session_start)
            self.writer.flush()

    return RunTensorBoard(run_name="", logging_dir=str(logs.local_root))


def log_with(tracker: str, logs: RunLogs) -> list[Any] | None:
    """What the Accelerator is made with for `train.tracker`."""
    if tracker == "none":
        return None
    if tracker == "tensorboard":
        return [run_tensorboard(logs)]
    if importlib.util.find_spec(tracker) is None:
        raise PermanentError(f"train.tracker is {tracker}, but {tracker} is not installed in the "
                             "image; add it to the Dockerfile (pip install 'modal-launcher[wandb]') "
                             "or use tensorboard")
    return [tracker]


def start(acc: Any, spec: JobSpec, logs: RunLogs) -> None:
    """Open the trackers for this run (they are open only while the loop runs: Modal's
    volume.reload() refuses to run while files are open)."""
    tracker = spec.train.tracker
    if tracker == "none":
        return
    logs.folder.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {}
    project = spec.name
    if tracker == "wandb":
        project = os.environ.get("WANDB_PROJECT") or spec.name
        kwargs = {"name": logs.run_id, "id": logs.run_id, "resume": "allow"}
        if not os.environ.get("WANDB_DIR"):
            kwargs["dir"] = str(logs.folder)
    # A warm container's earlier call left its trackers, finished, in the list that `init_trackers`
    # adds to (and `log` writes to): this call's alone.
    acc.trackers = []
    acc.init_trackers(project, config=hyperparameters(spec, logs.run_id),
                      init_kwargs={tracker: kwargs})


def hyperparameters(spec: JobSpec, run_id: str) -> dict[str, Scalar]:
    """The resolved spec, flattened to dotted names of scalars (`train.config.lr`), as trackers
    take hyperparameters: a list becomes its JSON text, a null the text 'null'."""
    flat: dict[str, Scalar] = {"run": run_id}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, (bool, int, float, str)):
            flat[prefix] = value
        else:  # None, lists
            flat[prefix] = json.dumps(value)

    walk("", spec.to_dict())
    return flat
