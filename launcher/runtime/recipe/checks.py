"""The recipe protocol enforced, and failures told in terms of the user's own code.

A recipe that breaks the protocol (a missing method, `train_step` returning something other
than a dict of numbers, `state_dict` returning something other than a dict) fails the same
way on every retry: it is a permanent failure, and its message names the user's file and
line. So is any exception before the first update of an attempt completes (a bad config, a
typo in `setup`, a recipe that cannot load): retrying cannot fix it, and on Modal each retry
would pay for a GPU container to find that out again.

Where a message names a place, it is the last frame of the traceback that is the user's code:
the recipe's own module, or any file outside the launcher package, Python's standard library
and installed packages.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import sysconfig
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from launcher.runtime.failures import LauncherBug, PermanentError, Preempted, VolumeError, launchers_bug

METHODS = ("setup", "train_step", "state_dict", "load_state_dict")
_LAUNCHER = Path(__file__).resolve().parents[2]  # launcher/runtime/recipe/checks.py
_LIBRARIES = {Path(p).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib")
              if (p := sysconfig.get_paths().get(key))}


class ProtocolError(PermanentError):
    """The recipe does not do what the runtime asks of it."""


def _short(path: str) -> str:
    """Relative to the working directory when under it (as a user reads it), else absolute."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative


def where(obj: Any) -> str:
    """`file:line` of a class or function, for messages."""
    obj = inspect.unwrap(getattr(obj, "__func__", obj))
    try:
        return f"{_short(inspect.getsourcefile(obj) or '?')}:{inspect.getsourcelines(obj)[1]}"
    except (OSError, TypeError):
        return getattr(obj, "__qualname__", repr(obj))


def check_class(recipe_cls: type, ref: str) -> None:
    """Stage 1: every method the runtime calls is there."""
    missing = [name for name in METHODS if not callable(getattr(recipe_cls, name, None))]
    if missing:
        names = ", ".join(f"{name}()" for name in missing)
        raise ProtocolError(f"{where(recipe_cls)}: train.recipe {ref} has no {names}; a recipe "
                            "needs setup, train_step, state_dict and load_state_dict (see "
                            "launcher/runtime/recipe/protocol.py)")


def metrics(recipe: Any, returned: Any, update: int) -> dict[str, float]:
    """`train_step`'s result as floats, or a ProtocolError naming the method."""
    method = f"{type(recipe).__name__}.train_step"
    if not isinstance(returned, dict):
        raise ProtocolError(f"{where(type(recipe).train_step)}: {method} returned "
                            f"{type(returned).__name__} in update {update}; it must return a dict "
                            "of metric names to numbers")
    try:
        return {str(k): float(v) for k, v in returned.items()}
    except (TypeError, ValueError):
        bad = next(k for k, v in returned.items() if not _number(v))
        raise ProtocolError(f"{where(type(recipe).train_step)}: {method} returned {bad!r}: "
                            f"{type(returned[bad]).__name__} in update {update}; metrics must be "
                            "numbers") from None


def _number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def recipe_state(recipe: Any) -> dict[str, Any]:
    state = recipe.state_dict()
    if not isinstance(state, dict):
        raise ProtocolError(f"{where(type(recipe).state_dict)}: {type(recipe).__name__}.state_dict "
                            f"returned {type(state).__name__}; it must return a dict")
    return state


def _recipe_home(recipe_cls: type | None) -> Path | None:
    """The recipe's top-level package folder, or its module file when it has no package."""
    module = sys.modules.get(getattr(recipe_cls, "__module__", ""))
    file = getattr(module, "__file__", None)
    if module is None or not file:
        return None
    home = Path(file).resolve()
    for _ in range(module.__name__.count(".") + (home.name == "__init__.py")):
        home = home.parent
    return None if home == _LAUNCHER else home  # launcher's own recipes: see _is_users


def _is_users(filename: str, home: Path | None) -> bool:
    if filename.startswith("<"):
        return False
    path = Path(filename).resolve()
    if home is not None and (path == home or path.is_relative_to(home)):
        return True
    if path.is_relative_to(_LAUNCHER):
        return path.is_relative_to(_LAUNCHER / "recipes")
    return not any(path.is_relative_to(lib) for lib in _LIBRARIES)


def user_frame(tb: TracebackType | None, recipe_cls: type | None = None) -> str | None:
    """`file:line` of the last traceback frame in the user's code (their recipe's package, or
    any file outside launcher, the standard library and installed packages)."""
    home = _recipe_home(recipe_cls)
    frames = [f for f in traceback.extract_tb(tb) if _is_users(f.filename, home)]
    return f"{_short(frames[-1].filename)}:{frames[-1].lineno}" if frames else None


# What only a mistake in code raises: met in launcher's own code, it is launcher's bug. Other
# exceptions there (OSError, RuntimeError from torch.distributed...) are the platform's.
@contextlib.contextmanager
def first_update_pending(when: Callable[[], str], recipe_cls: type | None,
                         pending: Callable[[], bool] = lambda: True) -> Iterator[None]:
    """The one rule for failures before an attempt's first update completes (while `pending()`):
    any exception is permanent, as `before_first_update` tells it (`when()` says where), since a
    retry would fail the same way; but the volume's own failure and a preemption go up as they
    are (a retry may well get past them). The session's stages and the loop's first update
    both run under it."""
    try:
        yield
    except (VolumeError, Preempted):
        raise
    except Exception as exc:
        if not pending():
            raise
        raise before_first_update(exc, when(), recipe_cls) from exc


def before_first_update(exc: BaseException, when: str, recipe_cls: type | None) -> PermanentError:
    """An exception before the attempt's first update completed, as a permanent failure."""
    if isinstance(exc, PermanentError):
        return exc
    if launchers_bug(exc):
        return LauncherBug.of(exc)
    place = user_frame(exc.__traceback__, recipe_cls)
    text = f"{type(exc).__name__}: {exc}".rstrip(": ")
    return PermanentError(f"{place + ': ' if place else ''}{text} ({when}, before the first update "
                          "completed: not retried, a retry would fail the same way)")
