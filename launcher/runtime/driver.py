"""The pipeline's driver: run the stages in order, skip an unchanged prepare, stop at a failure.

On Modal this runs in the app's small CPU function (`pipeline`, what `launch` spawns), with
each stage a `.remote()` call on its own class; locally the supervisor runs it with a worker
per attempt for each stage. Either way the driver only decides: which stage runs, whether
prepare is skipped (a finished result with the same digest, unless `rerun` names it), and
that the pipeline stops at the first stage that does not finish, naming it. `evaluate` always
runs again; train resumes from its newest checkpoint (and refuses one made on other data).

Standard library only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any

from launcher.runtime import events, stages
from launcher.runtime.stages import StageFolders
from launcher.runtime.volume import Volume
from launcher.spec.model import JobSpec

Runner = Callable[[str], dict[str, Any]]  # stage name -> its result ({"status": ..., ...})


def _skip(spec: JobSpec, folders: StageFolders, rerun: Collection[str],
          commit: str | None) -> dict[str, Any] | None:
    """prepare's earlier result when it finished with the inputs it has now, else None."""
    if "prepare" in rerun:
        events.log("prepare: running it again, as --rerun asks")
        return None
    done = stages.read_result(folders, "prepare")
    want = stages.digest(stages.inputs(spec, "prepare", commit))
    if done is None:
        return None
    if done.get("digest") != want:
        events.log("prepare: its inputs changed since it finished (spec section, seed or code): "
                   "running it again; train will not resume from checkpoints made on the old data")
        return None
    events.log(f"prepare: skipped, finished earlier with the same inputs (digest {want[:12]}); "
               "--rerun prepare runs it again")
    return {"stage": "prepare", "status": "skipped", "metrics": done.get("metrics", {}),
            "digest": want, "seconds": 0.0}


def _train_result(spec: JobSpec, folders: StageFolders, volume: Volume, result: dict[str, Any],
                  commit: str | None) -> dict[str, Any]:
    """train's loop result as a stage result, committed beside the others when it finished."""
    metrics = {k: v for k, v in (result.get("metrics") or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    out = {"stage": "train", "status": result.get("status", "failed"), "metrics": metrics,
           "error": result.get("error"), "seconds": result.get("seconds"),
           "steps": result.get("steps")}
    if out["status"] == "finished":
        earlier = stages.earlier_train_result(folders, result)
        if earlier is not None:  # nothing trained: keep what describes the checkpoint
            return {**out, "metrics": earlier.get("metrics", {})}
        inputs = stages.inputs(spec, "train", commit)
        out.update(digest=stages.digest(inputs), inputs=inputs)
        stages.write_result(folders, "train", out)
        volume.commit()
    return out


def run_pipeline(spec: JobSpec, run_stage: Runner, folders: StageFolders, volume: Volume,
                 rerun: Collection[str] = (), commit: str | None = None) -> dict[str, Any]:
    """Each stage's result, in order, and the pipeline's status: "finished", or "failed" with
    the stage that stopped it."""
    volume.reload()  # the stages' latest commits (prepare's result)
    done: list[dict[str, Any]] = []
    for name in spec.pipeline:
        skipped = _skip(spec, folders, rerun, commit) if name == "prepare" else None
        if skipped is not None:
            done.append(skipped)
            continue
        events.log(f"stage {name}: starting")
        started = time.monotonic()
        result = run_stage(name)
        if name == "train":
            result = _train_result(spec, folders, volume, result, commit)
        result = {**result, "stage": name, "wall_seconds": round(time.monotonic() - started, 3)}
        done.append(result)
        if result.get("status") != "finished":
            events.log(f"stage {name} failed: {result.get('error') or result.get('status')}; "
                       "the pipeline stops here")
            return {"status": "failed", "failed_stage": name, "stages": done}
    return {"status": "finished", "failed_stage": None, "stages": done}


def remote_runner(calls: dict[str, Callable[[], dict[str, Any]]]) -> Runner:
    """A Runner over the app's `.remote()` calls. A stage that raises (its retries spent, a
    timeout) is a failed stage, not a failed driver: the result names it."""
    def run(name: str) -> dict[str, Any]:
        try:
            return calls[name]()
        except Exception as exc:  # whatever Modal raises for the stage's last attempt
            return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    return run
