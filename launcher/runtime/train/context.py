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
from launcher.runtime.storage.volume import Volume
from launcher.spec.model import JobSpec


@dataclass(frozen=True)
class LoopContext:
    spec: JobSpec
    recipe: Any  # a launcher.runtime.recipe.protocol.Recipe, built on CPU in stage 1
    checkpoints: Path  # the job's own folder on the volume: <mount>/<job name>
    run_dir: Path  # tracker files, on local disk (an open file on a Volume blocks its reload)
    volume: Volume
    times: Mapping[str, float]  # stage timings so far, for the summary (the session adds to it)
    log_mirror: Path | None = None  # where run_dir is copied with each checkpoint; None: kept as is
    lease: Lease | None = None  # the job's lease, held by this run: each commit is a heartbeat
    folders: StageFolders | None = None  # a pipeline's data and stage results; None: no stages
    # evaluate: loads train's newest checkpoint, saves none; the process count that wrote it
    # does not matter (process 0's recipe state is loaded)
    reads_only: bool = False
    stops: StopWatch | None = None  # asked between updates: has `launch stop` asked this run to stop?
