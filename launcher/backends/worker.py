"""One local attempt: a fresh process that runs the generated app's lifecycle, as a container.

    python -m launcher.backends.worker APP.py [STAGE]

It imports the rendered app (so `--local` runs that very file: its SPEC literal, its image and
volume declarations), builds the `Session` its Modal class delegates to from the app's own
SPEC with a local directory as the volume, and runs the session's hooks in Modal's container
order (`launcher.runtime.lifecycle`). The exit code tells the supervisor how the attempt
ended (see launcher.runtime.failures). With STAGE (`prepare` or `evaluate`), it runs that
stage's class instead (`launcher.runtime.stage_session`), through the same hooks.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from launcher.runtime import events
from launcher.runtime.checkpoint import CheckpointError
from launcher.runtime.failures import (EXIT_OK, EXIT_PERMANENT, EXIT_PREEMPTED, EXIT_TRANSIENT,
                                       PermanentError, Preempted)
from launcher.runtime.lifecycle import run_container, run_input
from launcher.runtime.session import Session
from launcher.runtime.stage_session import StageSession
from launcher.runtime.volume import LocalVolume, Volume


def import_app(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("launch_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["launch_app"] = module
    spec.loader.exec_module(module)
    return module


def attempt(app_path: Path, volume: Volume | None = None, cluster: Any = None) -> dict[str, Any]:
    """`train`'s result for the app at `app_path`; `volume` defaults to LAUNCH_CHECKPOINT_DIR.

    `cluster` stands in for `modal.Cluster.from_context()` (multi-node rehearsals); a local
    run has none, so a multi-node spec runs as one node here.
    """
    module = import_app(app_path)
    volume = volume or LocalVolume(Path(os.environ["LAUNCH_CHECKPOINT_DIR"]))
    # steps=None: train.steps, what the app's `train` passes on when called with steps=0
    return run_container(Session(module.SPEC, volume=volume), resume=True, steps=None,
                         cluster=cluster)


def attempt_stage(app_path: Path, stage: str, volume: Volume | None = None) -> dict[str, Any]:
    """The result of one attempt of `stage` (prepare, evaluate) of the app at `app_path`."""
    module = import_app(app_path)
    volume = volume or LocalVolume(Path(os.environ["LAUNCH_CHECKPOINT_DIR"]))
    session = StageSession(module.SPEC, stage, volume=volume, commit=module.CODE_COMMIT)
    return run_input(session, session.run)


def run(app_path: Path, stage: str = "train") -> int:
    result = attempt(app_path) if stage == "train" else attempt_stage(app_path, stage)
    if result.get("status") == "permanent":
        raise PermanentError(result["error"])
    return EXIT_OK


def main(argv: list[str]) -> int:
    app_path, stage = Path(argv[0]), (argv[1] if len(argv) > 1 else "train")
    try:
        return run(app_path, stage)
    except Preempted as exc:
        events.emit("failure", kind="preempted", message=str(exc))
        return EXIT_PREEMPTED
    except PermanentError as exc:
        events.emit("failure", kind="permanent", message=str(exc))
        return EXIT_PERMANENT
    except (Exception, KeyboardInterrupt) as exc:
        if os.environ.get("LAUNCH_DEBUG") == "1":
            traceback.print_exc()
        clear = isinstance(exc, CheckpointError)  # already a full sentence for the user
        message = str(exc) if clear else f"{type(exc).__name__}: {exc}"
        events.log(f"error: {message}")
        events.emit("failure", kind="transient", message=message)
        return EXIT_TRANSIENT


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
