"""The `local` extra: the training runtime that `launch JOB --local` and the image need.

The distribution `modal-launcher` is the CLI alone (no torch); its `local` extra adds the
runtime. A run here asks for it up front, in one line, instead of failing in a worker, with the
pip command that adds the extra from wherever this installation came from.
"""

from __future__ import annotations

import importlib.util

from launcher.errors import LauncherError
from launcher.runtimeship import RUNTIME_DISTS, install_hint

# The modules of pyproject.toml's `local` extra (tests/test_extras.py keeps the lists equal).
RUNTIME_MODULES = RUNTIME_DISTS


def missing(modules: tuple[str, ...] = RUNTIME_MODULES) -> list[str]:
    """The modules that cannot be imported, found without importing them (torch takes seconds)."""
    return [name for name in modules if not _findable(name)]


def _findable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken install, or a module hidden in sys.modules
        return False


def require_runtime(what: str) -> None:
    """Refuse `what` (an option such as --local) when the runtime is not installed."""
    require(what, "the training runtime", RUNTIME_MODULES, "local")


def require(what: str, needs: str, modules: tuple[str, ...], extra: str) -> None:
    """Refuse `what` when `modules` (what `needs` names, the extra `extra`) are not installed."""
    absent = missing(modules)
    if absent:
        raise LauncherError(f"{what}: {needs} is not installed (no {', '.join(absent)}); "
                            f"install it with: {install_hint(extra)}")


def require_optuna() -> None:
    """Refuse a sweep when Optuna (the `sweep` extra) is not installed."""
    if not _findable("optuna"):
        raise LauncherError("a sweep needs Optuna, which is not installed; install it with: "
                            "pip install 'modal-launcher[sweep]'")
