"""One local attempt: a fresh process that runs the generated app's lifecycle, as a container.

    python -m launcher.backends.worker APP.py [STAGE]
    python -m launcher.backends.worker -      (the app and the stage, when ready, from stdin)

It imports the rendered app (so `--local` runs that very file: its SPEC literal, its image and
volume declarations), builds the `Session` its Modal class delegates to from the app's own
SPEC with a local volume (a working copy of the volume's folder, see
runtime/storage/volume.py), and runs the session's hooks in Modal's container order
(`launcher.runtime.lifecycle.container`), then the final commit. The exit code tells the
supervisor how the attempt ended (see launcher.runtime.failures). With STAGE (`prepare` or
`evaluate`), it runs that stage's class instead (`launcher.runtime.pipeline.stage_session`),
through the same hooks.

With `-`, the supervisor starts the worker before the app exists: as soon as it knows the
spec's `env:` (the worker's environment, fixed at its start as in a container), before it
validates the spec and renders the app. The worker spends that time on the imports every
attempt needs (modal for the app, torch and accelerate for stage 1), then reads one JSON line
from stdin: the app's path, the stage, and the LAUNCH_* settings that depend on the validated
spec and the run: LAUNCH_VOLUME (the committed folder), LAUNCH_CHECKPOINT_DIR (this attempt's
working copy), LAUNCH_RUN_DIR, and LAUNCH_RUN_ID (the run's id, the same for every attempt and
every stage: the call id of the job's lease), for a pipeline's stage LAUNCH_LEASE (the
driver's call id, whose lease the stage works under), and with `--shipped` LAUNCH_WORKDIR (the
shipped tree it runs from, see runtime/lifecycle/workdir.py). From its start it has LAUNCH_SUPERVISOR_PID and LAUNCH_LIFELINE_FD (the worker
dies with the supervisor, see runtime/lifecycle/lifeline.py) and, for tests only, LAUNCH_FAULT.

For a stage whose spec asks for a memory snapshot, the go says `snapshot`: the worker then
becomes the run's zygote and serves every attempt of every such stage, each restored from its
class's snapshot (launcher.backends.snapshot), reading one go per attempt until its input ends.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from launcher.runtime import events, faults
from launcher.runtime.checkpoint.store import CheckpointError
from launcher.runtime.failures import (EXIT_BUG, EXIT_OK, EXIT_PERMANENT, EXIT_PREEMPTED,
                                       EXIT_TRANSIENT, LauncherBug, PermanentError, Preempted,
                                       VolumeError, keep_traceback, launchers_bug)
from launcher.runtime.lifecycle import lifeline, process, timeline, workdir
from launcher.runtime.lifecycle.container import Hooks, run_container, run_input
from launcher.runtime.pipeline.stage_session import StageSession
from launcher.runtime.settings import PREFIX, current
from launcher.runtime.storage import disk
from launcher.runtime.storage.volume import LocalVolume, Volume
from launcher.runtime.train.session import Session
from launcher.spec.model import StageName


def import_app(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("launch_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["launch_app"] = module
    spec.loader.exec_module(module)
    return module


def run_id() -> str | None:
    """The call id of this run, as `modal.current_function_call_id()` gives it on Modal."""
    return current().run_id


def driver_lease() -> str:
    """The pipeline driver's call id, whose lease this stage works under, as the driver passes
    it to the stage's method on Modal (LAUNCH_LEASE; empty for a single job)."""
    return current().lease or ""


def attempt(app_path: Path, volume: Volume | None = None, cluster: Any = None) -> dict[str, Any]:
    """`train`'s result for the app at `app_path`; `volume` defaults to the supervisor's.

    `cluster` stands in for `modal.Cluster.from_context()` (multi-node rehearsals); a local
    run has none, so a multi-node spec runs as one node here.
    """
    module = import_app(app_path)
    timeline.mark("app")
    settings = current()
    volume = volume or LocalVolume.of(settings, module.SPEC["name"])
    # steps=None: train.steps, what the app's `train` passes on when called with steps=0
    return run_container(Session(module.SPEC, volume=volume, call_id=run_id, settings=settings), resume=True,
                         steps=None, cluster=cluster, volumes=(volume,), lease=driver_lease())


# What every attempt imports anyway, in the order it would: the app (modal), then stage 1
# (torch builds its first optimizer through torch._dynamo, seconds on its own: imported here,
# a snapshot of each class shares it instead of importing it again in its stage 1).
PRELOAD = ("modal", "torch", "accelerate", "torch._dynamo")
STDIN = "-"


def handshake() -> dict[str, Any]:
    """Preload, then wait for the supervisor's go: the app's path, the stage, settings for
    LAUNCH_*, and whether to serve attempts from a snapshot (launcher.backends.snapshot)."""
    for name in PRELOAD:
        importlib.import_module(name)
    timeline.mark("preloaded")
    line = sys.stdin.readline()
    if not line:
        raise SystemExit(EXIT_TRANSIENT)  # the supervisor went away before the app was ready
    go = json.loads(line)
    timeline.mark("go")
    # Only launcher's own settings arrive late: they are read after this, by launcher. The
    # spec's env was in this process's environment from its start.
    os.environ.update({k: v for k, v in go["env"].items() if k.startswith(PREFIX)})
    return go


def container(module: ModuleType, stage: StageName, volume: Volume) -> tuple[Hooks, Callable[[], dict[str, Any]]]:
    """The object behind the app's class for `stage` (train, prepare, evaluate), and its input."""
    if stage == "train":
        session = Session(module.SPEC, volume=volume, call_id=run_id, settings=current())
        # steps=None: train.steps, what the app's `train` passes on when called with steps=0
        return session, lambda: session.train(resume=True, steps=None, lease=driver_lease())
    stage_session = StageSession(module.SPEC, stage, volume=volume, commit=module.CODE_COMMIT,
                                 call_id=run_id, settings=current())
    return stage_session, lambda: stage_session.run(lease=driver_lease())


def attempt_stage(app_path: Path, stage: StageName, volume: Volume | None = None) -> dict[str, Any]:
    """The result of one attempt of `stage` (prepare, evaluate) of the app at `app_path`."""
    module = import_app(app_path)
    timeline.mark("app")
    volume = volume or LocalVolume.of(current(), module.SPEC["name"])
    session, call = container(module, stage, volume)
    return run_input(session, call, volumes=(volume,))


def run(app_path: Path, stage: StageName = "train") -> int:
    result = attempt(app_path) if stage == "train" else attempt_stage(app_path, stage)
    if result.get("status") == "permanent":
        raise (LauncherBug if result.get("bug") else PermanentError)(result["error"])
    return EXIT_OK


def _arm() -> None:
    """Die with the supervisor; take a fault to inject from the supervisor's environment."""
    settings = current()
    if settings.supervisor_pid:
        lifeline.arm(settings.supervisor_pid, settings.lifeline_fd)
    faults.arm_from(settings)


def serve(go: dict[str, Any]) -> int:
    """The run's zygote: every attempt of the stages with a snapshot, each restored from its
    class's snapshot (launcher.backends.snapshot.server)."""
    from launcher.backends.snapshot import server

    module = import_app(Path(go["app"]))
    timeline.mark("app")
    return server.serve(go, sys.stdin, module, container, outcome)


def _main(argv: list[str]) -> int:
    _arm()  # the lifeline first: a worker still importing dies with the supervisor too
    if argv[0] != STDIN:
        return run(Path(argv[0]), argv[1] if len(argv) > 1 else "train")
    go = handshake()
    workdir.enter()  # --shipped: from here on the shipped tree is the working directory
    if go.get("snapshot"):
        return serve(go)
    return run(Path(go["app"]), go.get("stage", "train"))


def main(argv: list[str]) -> int:
    process.pause_gc()  # start-up until the end of stage 1 (launcher.runtime.lifecycle.process)
    timeline.mark("worker")
    return outcome(lambda: _main(argv))


def outcome(body: Callable[[], int]) -> int:
    """`body`'s exit code, or the one that says how it failed (launcher.runtime.failures)."""
    try:
        return body()
    except Preempted as exc:
        events.emit("failure", kind="preempted", message=str(exc))
        return EXIT_PREEMPTED
    except KeyboardInterrupt:
        # SIGINT before the loop could checkpoint (start-up), or a second one: as on Modal, a
        # preemption; the restart resumes from the last commit.
        events.emit("failure", kind="preempted", message="stopped on SIGINT before a checkpoint "
                    "could be written; the restart resumes from the last commit")
        return EXIT_PREEMPTED
    except PermanentError as exc:
        if isinstance(exc, LauncherBug):  # its traceback was kept where it was raised
            events.emit("failure", kind="bug", message=str(exc))
            return EXIT_BUG
        events.emit("failure", kind="permanent", message=str(exc))
        return EXIT_PERMANENT
    except Exception as exc:
        return _unexpected(exc)


def _unexpected(exc: Exception) -> int:
    """An exception that left the session (or came before it): its traceback is kept in the
    run's error log; a storage error (a full disk, a read-only one) and a bug in launcher are
    not retried, anything else is (transient)."""
    settings = current()
    if settings.debug:
        traceback.print_exc()
    log = _keep(exc, settings.run_dir)
    found = disk.error(exc, "the attempt failed", settings.checkpoint_dir)
    if found is not None:  # no retry fixes it
        events.log(f"error: {found}")
        events.emit("failure", kind="permanent", message=str(found))
        return EXIT_PERMANENT
    if launchers_bug(exc):
        events.emit("failure", kind="bug", message=f"{LauncherBug.of(exc)}{log}")
        return EXIT_BUG
    clear = isinstance(exc, (CheckpointError, VolumeError))  # already full sentences
    message = (str(exc) if clear else f"{type(exc).__name__}: {exc}") + log
    events.log(f"error: {message}")
    events.emit("failure", kind="transient", message=message)
    return EXIT_TRANSIENT


def _keep(exc: Exception, folder: Path | None) -> str:
    """Keep the traceback in the run's folder (LAUNCH_RUN_DIR); '; the traceback is in ...'."""
    if folder is None:
        return ""
    try:
        return f"; the traceback is in {keep_traceback(exc, folder)}"
    except OSError:
        return ""


if __name__ == "__main__":
    fast = process.FastExit()  # before any other exit handler is registered: it runs last
    fast.code = main(sys.argv[1:])
    timeline.mark("worker_exit")
    sys.exit(fast.code)
