"""`module:name` references (train.recipe), found and imported the same way everywhere.

Standard library only: `launch check` uses it to find a recipe's schema file, and the runtime
inside the container to import the recipe.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import os
import sys
from pathlib import Path

from launcher.runtime import settings


class RefError(Exception):
    """A reference that names no importable module, or a module without that name."""


def split(ref: str) -> tuple[str, str]:
    module, _, name = ref.partition(":")
    return module, name


def closest(word: str, options: list[str]) -> str | None:
    """The option `word` most likely meant: one that differs only in case first, then the
    closest by difflib's ratio (compared case-insensitively), else None."""
    folded: dict[str, str] = {}
    for option in options:
        folded.setdefault(option.lower(), option)
    if word.lower() in folded:
        return folded[word.lower()]
    close = difflib.get_close_matches(word.lower(), list(folded), n=1, cutoff=0.6)
    return folded[close[0]] if close else None


def did_you_mean(word: str, options: list[str]) -> str:
    found = closest(word, options)
    return f"; did you mean {found!r}?" if found is not None else ""


# The repository's root: `launch` finds a user's modules there wherever it runs (a subfolder,
# another folder altogether), as the container finds them in its working directory. A local
# worker is told it in its settings (`code_root`).
_root: list[str] = []


def use_root(root: Path) -> None:
    """Search `root` for modules named by references, instead of the root used before."""
    for old in _root:
        if old in sys.path:
            sys.path.remove(old)
    _root[:] = [str(root)]


def _cwd_on_path() -> None:
    """A user's own module sits in their repository: its root and then the working directory
    are searched last."""
    code_root = settings.current().code_root
    for folder in (*_root, str(code_root) if code_root else None, os.getcwd()):
        if folder and folder not in sys.path:
            sys.path.append(folder)


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
        public = [n for n in dir(module) if not n.startswith("_")]
        raise RefError(f"{module_name!r} has no {name!r}{did_you_mean(name, public)}") from None


def _bound(statements: list[ast.stmt]) -> list[str]:
    names: list[str] = []
    for node in statements:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names += [(a.asname or a.name).split(".")[0] for a in node.names]
        elif isinstance(node, (ast.If, ast.Try, ast.With)):  # `try: import torch ... class X`
            handlers = [h.body for h in getattr(node, "handlers", [])]
            for block in (node.body, getattr(node, "orelse", []), getattr(node, "finalbody", []), *handlers):
                names += _bound(block)
    return names


def top_level_names(source: str) -> list[str]:
    """The names a module binds at its top level (inside a top-level if, try or with too):
    functions, classes, assignments, imports."""
    return _bound(ast.parse(source).body)


def find_name(ref: str) -> None:
    """Raise RefError when `module:name` names no module, or a module without the name; read
    from the module's source, without running it (it may import torch)."""
    module, name = split(ref)
    origin = module_file(module)
    if origin is None or origin.suffix != ".py":
        import_ref(ref)  # not Python source: only importing it can tell
        return
    try:
        names = top_level_names(origin.read_text("utf-8"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise RefError(f"cannot read {module!r}: {type(exc).__name__}: {exc}") from None
    if "*" in names or "__getattr__" in names:
        import_ref(ref)  # names bound at run time: only importing it can tell
    elif name not in names:
        public = [n for n in names if not n.startswith("_")]
        raise RefError(f"{module!r} has no {name!r}{did_you_mean(name, public)}")
