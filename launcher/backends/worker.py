"""One local attempt: a fresh process that goes through the generated app's own class lifecycle.

    python -m launcher.backends.worker APP.py

It imports the rendered app, swaps its Modal Volume for a local directory, and calls the
class's hooks in Modal's container order, found the way Modal's own container entrypoint
finds them: enter(snap=True), enter(snap=False), the `train` method, exit. The exit code
tells the supervisor how the attempt ended (see launcher.runtime.failures).
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


class LocalVolume:
    """A directory standing in for a Modal Volume: writes are durable once fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.commits = 0

    def commit(self) -> None:
        os.sync()  # what Modal does before its final commit; the checkpoint store fsyncs too
        self.commits += 1

    def reload(self) -> None:
        """Nothing to fetch: this process sees the directory as it is."""


def import_app(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("launch_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["launch_app"] = module
    spec.loader.exec_module(module)
    return module


def lifecycle(module: ModuleType) -> tuple[Any, dict[str, list[Any]]]:
    """The app's user object and its hooks, in the order Modal's container runs them."""
    from modal._partial_function import _find_callables_for_obj, _PartialFunctionFlags as F

    obj = module.Trainer._get_user_cls()()
    hooks = {
        "enter_snap": list(_find_callables_for_obj(obj, F.ENTER_PRE_SNAPSHOT).values()),
        "enter": list(_find_callables_for_obj(obj, F.ENTER_POST_SNAPSHOT).values()),
        "train": [_find_callables_for_obj(obj, F.CALLABLE_INTERFACE)["train"]],
        "exit": list(_find_callables_for_obj(obj, F.EXIT).values()),
    }
    return obj, hooks


def run(app_path: Path) -> int:
    module = import_app(app_path)
    module.volume = LocalVolume(Path(os.environ["LAUNCH_CHECKPOINT_DIR"]))
    _, hooks = lifecycle(module)
    try:
        for hook in hooks["enter_snap"] + hooks["enter"]:
            hook()
        result = hooks["train"][0](resume=True, steps=0)  # 0: train.steps, as on Modal
    finally:
        for hook in hooks["exit"]:
            try:
                hook()
            except Exception as exc:  # never hide why the attempt ended
                events.log(f"warning: exit hook failed: {type(exc).__name__}: {exc}")
    if isinstance(result, dict) and result.get("status") == "permanent":
        raise PermanentError(result["error"])
    return EXIT_OK


def main(argv: list[str]) -> int:
    app_path = Path(argv[0])
    try:
        return run(app_path)
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
