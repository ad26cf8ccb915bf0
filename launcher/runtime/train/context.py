"""What one training loop works with, handed to it (and to its checkpoint manager) by the session.

The session owns the container's state across calls (stages, the recipe class, rebuilds);
a loop and its checkpoint manager see only this frozen snapshot of what they need. A
rebuild (a failed update, `resume=False` on a warm container) makes a new recipe, hence a
new context and a new loop: nothing in here changes under a running loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher.runtime.control.stop import StopWatch
from launcher.runtime.lease import Lease
from launcher.runtime.pipeline.stages import StageFolders
from launcher.runtime.runlogs import RunLogs
from launcher.runtime.storage.volume import Volume
from launcher.spec.model import CheckpointPick, JobSpec


@dataclass(frozen=True)
class LoopContext:
    spec: JobSpec
    recipe: Any  # a launcher.runtime.recipe.protocol.Recipe, built on CPU in stage 1
    checkpoints: Path  # the job's own folder on the volume: <mount>/<job name>
    # The run's logs: tracker files in a folder of its own on local disk (an open file on a
    # Volume blocks its reload), copied to the job's folder with each checkpoint
    logs: RunLogs
    volume: Volume
    times: Mapping[str, float]  # stage timings so far, for the summary (the session adds to it)
    lease: Lease | None = None  # the job's lease, held by this run: each commit is a heartbeat
    folders: StageFolders | None = None  # a pipeline's data and stage results; None: no stages
    # evaluate: loads train's newest checkpoint, saves none; the process count that wrote it
    # does not matter (process 0's recipe state is loaded)
    reads_only: bool = False
    # which checkpoint resume picks: latest (the newest usable) or best (by the objective the
    # manifests record; evaluate with stages.evaluate.checkpoint: best)
    pick: CheckpointPick = "latest"
    stops: StopWatch | None = None  # asked between updates: has `launch stop` asked this run to stop?
