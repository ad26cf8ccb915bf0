"""`module:name` references (train.recipe), found and imported the same way everywhere.

Standard library only: `launch check` uses it to find a recipe's schema file, and the runtime
inside the container to import the recipe.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path


class RefError(Exception):
    """A reference that names no importable module, or a module without that name."""


def split(ref: str) -> tuple[str, str]:
    module, _, name = ref.partition(":")
    return module, name


def _cwd_on_path() -> None:
    """A user's own module sits next to their specs: the working directory is searched last."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())


def module_file(module: str) -> Path | None:
    """The file that defines `module` (None for a built-in one), found without running the
    module itself (its parent packages do run)."""
    _cwd_on_path()
    try:
        found = importlib.util.find_spec(module)
    except Exception as exc:  # a parent package that fails to import, or a bad name
        raise RefError(f"cannot import {module!r}: {type(exc).__name__}: {exc}") from None
    if found is None:
        raise RefError(f"no module named {module!r}")
    return Path(found.origin) if found.origin and os.path.isfile(found.origin) else None


def import_ref(ref: str) -> object:
    """The object that `module:name` names; any failure is a RefError that says what failed."""
    module_name, name = split(ref)
    _cwd_on_path()
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the module's own code may raise anything
        raise RefError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    try:
        return getattr(module, name)
    except AttributeError:
        raise RefError(f"{module_name!r} has no {name!r}") from None
