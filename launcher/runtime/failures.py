"""How an attempt ended, as the supervisor (local) or Modal's retry policy should treat it.

A worker process exits with one of these codes; the local supervisor maps them to retry
decisions, and the summary names the class of each attempt's end. A bug in launcher
(`LauncherBug`, see protocol.launchers_bug) is permanent, and ours: `launch` exits 3.

Errors keep their cause: every traceback is appended to the run's error log (`keep_traceback`),
and a failure that crosses a process boundary (rank 0 to the other ranks) travels as plain data
(`describe`) and is rebuilt with its class, errno and traceback (`rebuilt`).
"""

from __future__ import annotations

import datetime
import os
import sys
import sysconfig
import traceback
from pathlib import Path
from typing import Any, Literal

from launcher.runtime.settings import current

EXIT_OK = 0
EXIT_TRANSIENT = 1  # anything unexpected: retried with the spec's backoff
EXIT_PERMANENT = 65  # cannot succeed on a retry: not retried
EXIT_PREEMPTED = 75  # stopped on a signal after a final checkpoint: restarted, no retry spent
EXIT_BUG = 70  # a bug in launcher (sysexits' EX_SOFTWARE): not retried, the CLI exits 3
ERROR_LOG = "errors.log"  # beside the run's tracker files: every traceback, in full
BUG = "internal error (a bug in launcher)"


class PermanentError(Exception):
    """A failure that a retry cannot fix: bad recipe, bad config, a diverged loss."""


class LauncherBug(PermanentError):
    """An exception that launcher's own code raised and no input explains (a TypeError, an
    AttributeError...): a retry would hit it again, and it is ours to fix, not the user's."""

    @classmethod
    def of(cls, exc: BaseException) -> LauncherBug:
        return exc if isinstance(exc, LauncherBug) else cls(f"{BUG}: {type(exc).__name__}: {exc}")


class VolumeError(Exception):
    """The volume itself failed (a reload or commit): infrastructure, retried like any transient
    failure, even before the first update (where an error of the job's own is permanent).
    `errno` is the failed operation's, if it had one (ENOSPC: the volume is full)."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class RemoteTraceback(Exception):
    """Another process's traceback, as text: the `__cause__` of the exception rebuilt from it
    (an exception object may not pickle; its traceback never does)."""

    def __str__(self) -> str:
        return f"\n{self.args[0]}"


class RankError(Exception):
    """Another rank's failure that is neither permanent nor a bug, rebuilt with its type's name
    (`kind`), message and errno; its traceback is the `__cause__`."""

    def __init__(self, message: str, kind: str = "", errno: int | None = None) -> None:
        super().__init__(f"{kind}: {message}" if kind else message)
        self.kind = kind
        self.errno = errno


def headline(exc: BaseException) -> str:
    """`exc` in one line: where in the user's code it was raised, when known (see
    recipe/checks.py `locate`), then its type and message."""
    where = getattr(exc, "launch_where", "")
    text = f"{type(exc).__name__}: {exc}".rstrip(": ") if not isinstance(exc, RankError) else str(exc)
    return f"{where}: {text}" if where else text


def describe(exc: BaseException, bug: bool = False) -> dict[str, Any]:
    """`exc` as plain data that crosses a process boundary (a broadcast, a result file):
    its type's name, message, errno, class of failure and full traceback. `bug`: a launcher
    bug that is not yet a LauncherBug (see protocol.launchers_bug)."""
    return {"kind": type(exc).__name__, "message": str(exc), "errno": _errno(exc),
            "permanent": isinstance(exc, PermanentError),
            "bug": bug or isinstance(exc, LauncherBug),
            "traceback": "".join(traceback.format_exception(exc)),
            "where": getattr(exc, "launch_where", "")}


def _errno(exc: BaseException | None) -> int | None:
    """The errno of `exc` or of the first of its causes that has one (a CheckpointError raised
    from the OSError of a full disk: ENOSPC)."""
    while exc is not None:
        if isinstance(getattr(exc, "errno", None), int):
            return exc.errno  # type: ignore[attr-defined]
        exc = exc.__cause__
    return None


def rebuilt(described: dict[str, Any]) -> Exception:
    """The exception `describe` described, as this process raises it: a bug stays a bug, a
    permanent failure permanent, anything else a RankError (retried); each keeps its errno, and
    its traceback as the `__cause__`."""
    message = described["message"]
    error: Exception
    if described["bug"]:
        error = LauncherBug(message if described["permanent"] else
                            f"{BUG}: {described['kind']}: {message}")
    elif described["permanent"]:
        error = PermanentError(message)
    else:
        error = RankError(message, described["kind"], described["errno"])
    error.__cause__ = RemoteTraceback(described["traceback"])
    if described.get("where"):
        error.launch_where = described["where"]  # type: ignore[attr-defined]
    return error


def failed(result: dict[str, Any]) -> PermanentError:
    """The permanent failure (or bug) a stage's result reports, to raise where the result
    arrives (the local worker), its traceback as the `__cause__`."""
    error = (LauncherBug if result.get("bug") else PermanentError)(result["error"])
    if result.get("traceback"):
        error.__cause__ = RemoteTraceback(result["traceback"])
    return error


def traceback_text(exc: BaseException) -> str:
    """`exc`'s full traceback; for an error rebuilt from another process's, that one."""
    cause = exc.__cause__
    if isinstance(cause, RemoteTraceback):
        return cause.args[0]
    return "".join(traceback.format_exception(exc))


def keep_traceback(exc: BaseException, folder: Path, label: str = "") -> str:
    """Append `exc`'s full traceback (its causes included) to the error log in `folder`, once
    per exception, as pre-commit keeps pre-commit.log; where to read it. Each entry's heading
    says when, which process and, locally, which attempt; `label` adds to it (the run)."""
    kept = getattr(exc, "launch_log", None)
    if kept is not None:
        return str(kept)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / ERROR_LOG
    when = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    attempt = current().attempt
    heading = " ".join(filter(None, (when, label, attempt and f"attempt {attempt}",
                                     f"pid {os.getpid()}", f"python {sys.version.split()[0]}")))
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"### {heading}\n{''.join(traceback.format_exception(exc))}\n")
    exc.launch_log = str(log)  # type: ignore[attr-defined]  # kept: never twice
    return str(log)


class Preempted(Exception):
    """The run stopped on SIGINT/SIGTERM after writing and committing a checkpoint."""


# How one attempt ended, as the local supervisor tells it from the worker's exit code.
# "stopped": set by the supervisor, not by an exit code (`launch stop` asked; see backends/local.py)
Outcome = Literal["finished", "permanent", "bug", "preempted", "transient", "stopped"]


def classify(exit_code: int | None) -> Outcome:
    """The failure class of a worker's exit code (a negative code is a kill by signal)."""
    known: dict[int | None, Outcome] = {EXIT_OK: "finished", EXIT_PERMANENT: "permanent",
                                        EXIT_BUG: "bug", EXIT_PREEMPTED: "preempted"}
    return known.get(exit_code, "transient")


# A bug in launcher, told from the user's mistakes: where the exception was raised.
_LAUNCHER = Path(__file__).resolve().parents[1]  # launcher/runtime/failures.py
_STDLIB, _PACKAGES = ({Path(p).resolve() for key in keys if (p := sysconfig.get_paths().get(key))}
                      for keys in (("stdlib", "platstdlib"), ("purelib", "platlib")))
_MISTAKES = (AttributeError, TypeError, KeyError, IndexError, NameError, AssertionError)


def launchers_bug(exc: BaseException) -> bool:
    """Whether `exc` is a bug in launcher: a mistake in code (a TypeError, say) raised by
    launcher's own code, or by the standard library it called; not in a recipe, nor in any
    installed package (a user's recipe may be one; torch calls the user's code back)."""
    if isinstance(exc, LauncherBug):
        return True
    if not isinstance(exc, _MISTAKES) or isinstance(exc, PermanentError):
        return False
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.startswith("<"):  # <frozen importlib._bootstrap> and the like
            continue
        path = Path(frame.filename).resolve()
        if path.is_relative_to(_LAUNCHER):  # before the packages: launcher may be installed
            return not path.is_relative_to(_LAUNCHER / "recipes")
        if not _in_stdlib(path):
            return False  # the user's code, generated code or a package raised it
    return False


def _in_stdlib(path: Path) -> bool:
    return any(path.is_relative_to(lib) for lib in _STDLIB) and \
        not any(path.is_relative_to(lib) for lib in _PACKAGES)
