"""Fault injection for the reliability tests: kill or interrupt this process at a named point.

Off unless armed. Only the local worker arms it (`arm`), from LAUNCH_FAULT in the environment
its supervisor built: runtime names there come from the supervisor's own environment, never
from the spec's `env:` (which may not name LAUNCH_* at all), and the generated Modal app never
arms it. A fault is `KIND:POINT:N`, e.g. `kill:step:7` (SIGKILL right after update 7),
`int:written:6` (SIGINT once checkpoint step-6's files are written, before they are
published), `enospc:written:6` (the disk fills up there), `bug:step:2` (a bug in launcher's
own code: a TypeError raised there). Kinds: kill, int, term, enospc, bug.

The points, in the order a run passes them (N is the update count for step and for the
three phases of checkpoint step-N; for the others, the visit within the attempt):

    stage1:1     stage 1 done
    stage2:1     stage 2 done (volume reloaded, newest checkpoint loaded)
    lease:1      the job's lease taken and committed, leftovers cleaned
    step:N       update N done (train_step(N - 1) returned)
    written:N    checkpoint step-N's files written, not yet published
    published:N  step-N renamed into place, not yet committed
    committed:N  step-N committed
    released:1   the run finished and released its lease (committed)
    exit:1       the exit hook done, before the container's final commit

A pipeline's other stages (prepare, evaluate; each an attempt of its own) have two more each:

    STAGE-run:1   the stage function returned, nothing committed yet
    STAGE-done:1  its data and result committed

It fires only in attempt LAUNCH_FAULT_ATTEMPT (default 1), so the retry that follows runs
clean, as after a real crash; only global rank 0 fires.
"""

from __future__ import annotations

import errno
import os
import signal

from launcher.runtime.settings import RuntimeSettings

POINTS = ("stage1", "stage2", "lease", "step", "written", "published", "committed", "released", "exit")
BY_STEP = ("step", "written", "published", "committed")
STAGE_POINTS = tuple(f"{stage}-{when}" for stage in ("prepare", "evaluate") for when in ("run", "done"))
_SIGNALS = {"kill": signal.SIGKILL, "int": signal.SIGINT, "term": signal.SIGTERM}
_RAISED = ("enospc", "econnreset", "bug")  # a full disk (permanent), a dropped connection (transient)

_armed: tuple[str, str, int] | None = None
_counts: dict[str, int] = {}


def parse(fault: str) -> tuple[str, str, int]:
    kind, where, when = fault.split(":")
    if kind not in (*_SIGNALS, *_RAISED) or where not in (*POINTS, *STAGE_POINTS):
        raise ValueError(f"not a fault: {fault!r} (KIND:POINT:N, kinds {', '.join([*_SIGNALS, *_RAISED])}, "
                         f"points {', '.join((*POINTS, *STAGE_POINTS))})")
    return kind, where, int(when)


def arm(fault: str | None, attempt: str = "1", fault_attempt: str = "1") -> None:
    """Arm `fault` for this process (and the ones it forks) if this is the attempt to fault."""
    global _armed
    _counts.clear()
    _armed = parse(fault) if fault and attempt == fault_attempt else None


def arm_from(settings: RuntimeSettings) -> None:
    """Arm the fault the supervisor passed on (`settings.fault`), for its attempt."""
    arm(settings.fault, str(settings.attempt or 1), str(settings.fault_attempt or 1))


def point(name: str, at: int | None = None) -> None:
    """Mark reaching `name`; `at` is the update count for the by-step points."""
    if _armed is None or os.environ.get("RANK", "0") != "0":
        return
    kind, where, when = _armed
    if where != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if (at if at is not None else _counts[name]) != when:
        return
    if kind == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if kind == "econnreset":
        raise ConnectionResetError(errno.ECONNRESET, os.strerror(errno.ECONNRESET))
    if kind == "bug":
        raise TypeError(f"an injected bug in launcher at {name}")
    os.kill(os.getpid(), _SIGNALS[kind])
