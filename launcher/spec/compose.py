"""Build one document from a spec file, its `extends:` bases and `--set` overrides.

Positions follow values through the merge: each value keeps the location of the file (or the
`--set` flag) that supplied it, so an error points into the file that holds the bad value.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

from launcher.errors import Location, Problem, SpecError
from launcher.spec import yamlpos
from launcher.spec.credentials import (MASK, has_token, looks_like_credential, url_has_credentials,
                                       url_has_query)
from launcher.spec.yamlpos import Document, JsonPath, json_path, walk

_NAMES = re.compile(r"[A-Za-z0-9_-]+")  # what could be a name in a --set flag's path or value
_KEYED = re.compile(r"""["']?\s*[:=]""")  # a name used as a key: a value follows
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")  # what a spec's top-level key can look like


def _paths(value: Any, path: JsonPath = ()) -> list[JsonPath]:
    return [where for where, _ in walk(value, path)]


def _deep_merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = _deep_merge(base[key], value) if key in base else value
        return merged
    return over


def merge(base: Document, over: Document) -> Document:
    """Deep-merge `over` onto `base`: mappings key by key, anything else replaced."""
    value = _deep_merge(base.value, over.value)
    merged = Document(value)
    for path in _paths(value):
        for mine, theirs, out in ((over.values, base.values, merged.values),
                                  (over.keys, base.keys, merged.keys)):
            found = mine.get(path) or theirs.get(path)
            if found is not None:
                out[path] = found
    return merged


def _extends_list(doc: Document) -> list[tuple[str, Location]]:
    raw = doc.value.pop("extends", None)
    where = doc.where(("extends",))
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    if not all(isinstance(item, str) and item and "\0" not in item for item in items):
        raise SpecError([Problem(where, "$.extends",
                                 "must be a path or a list of paths to base specs")])
    return [(item, doc.where(("extends", i)) if isinstance(raw, list) else where)
            for i, item in enumerate(items)]


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for the file system, say: no base spec there either
        return False


def _resolve(path: Path, where: Location, shown: str) -> Path:
    """The real path of a base spec; a symbolic link that leads back to itself is refused."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: Python 3.11 and 3.12 on a symlink loop
        raise SpecError([Problem(where, "$.extends",
                                 f"base spec {shown!r} is a loop of symbolic links")]) from None


def _not_a_spec(doc: Document, where: Location, shown: str) -> SpecError | None:
    """A base that cannot be a spec (`extends: /etc/shadow`), refused where `extends` names it:
    never its content, which later messages (unknown key '<a line of the file>') would echo."""
    value = doc.value
    if isinstance(value, dict) and all(isinstance(k, str) and _KEY.fullmatch(k) for k in value):
        return None
    return SpecError([Problem(where, "$.extends",
                              f"base spec {shown!r} is not a job spec: its top level is not a "
                              "mapping of spec keys (its content is not shown)")])


def load_file(path: Path, display: str, chain: tuple[Path, ...] = (),
              extended_at: Location | None = None) -> Document:
    """Load `path` with its bases merged underneath; `chain` holds the files above it, and
    `extended_at` where the file below names it (a base)."""
    doc = yamlpos.load(path, display)
    refused = None if extended_at is None else _not_a_spec(doc, extended_at, display)
    if refused is not None:
        raise refused
    if not isinstance(doc.value, dict):
        raise SpecError([Problem(doc.where(()), "$", "the top level of a spec must be a mapping")])
    merged = Document({})
    chain = chain + (path.resolve(),)  # `path` was read, so it resolves
    for rel, where in _extends_list(doc):
        shown = os.path.normpath(os.path.join(os.path.dirname(display), rel))
        target = _resolve(path.parent / rel, where, shown)
        if target in chain:
            names = " -> ".join([*(p.name for p in chain), target.name])
            raise SpecError([Problem(where, "$.extends", f"extends cycle: {names}")])
        if not _is_file(target):
            raise SpecError([Problem(where, "$.extends", f"base spec {shown!r} does not exist")])
        merged = merge(merged, load_file(target, shown, chain, where))
    return merge(merged, doc)


def _sensitive(text: str) -> bool:
    """Whether `text` holds a token or names a credential anywhere (`{HF_TOKEN: x}`, `DB-PASS`)."""
    return has_token(text) or any(looks_like_credential(name) for name in _NAMES.findall(text))


def _holds_credential(value: str) -> bool:
    """Whether a `--set` value holds a token, or a credential under its key (`{HF_TOKEN: x}`).
    A credential's name alone (`train.recipe=HF_TOKEN`) is no secret: it is shown."""
    return has_token(value) or any(looks_like_credential(m[0]) and _KEYED.match(value, m.end())
                                   for m in _NAMES.finditer(value))


def _set_source(arg: str) -> str:
    """How messages name a `--set` flag: quoted when it holds a newline or other control
    character, so that every message stays on one line; a credential's value is masked."""
    dotted, eq, text = arg.partition("=")
    if not eq and _sensitive(arg):
        arg = MASK
    elif eq and (_sensitive(dotted) or _holds_credential(text) or url_has_credentials(text.strip())
                or url_has_query(text.strip())):
        arg = f"{dotted}={MASK}"
    return f"--set {arg}" if arg.isprintable() else f"--set {arg!r}"


def _set_problem(arg: str, message: str, path: str = "") -> SpecError:
    return SpecError([Problem(Location(_set_source(arg)), path, message)])


def apply_set(doc: Document, arg: str) -> Document:
    """Apply one `--set dotted.path=value` override; the value is read as YAML."""
    dotted, eq, text = arg.partition("=")
    if not eq:
        raise _set_problem(arg, "expected PATH=VALUE, e.g. --set train.steps=500")
    keys = [key.strip() for key in dotted.split(".")]  # `env.X = 1` sets X, as it reads
    if not all(keys):
        raise _set_problem(arg, f"{dotted!r} is not a dotted path such as compute.gpu_count")
    if keys[0] == "extends":  # bases are merged while the file loads; a later value is ignored
        raise _set_problem(arg, "cannot be set with --set; edit the spec's extends: instead",
                           "$.extends")
    value = yamlpos.parse(text, _set_source(arg)).value if text.strip() else None
    path = tuple(keys)
    container = doc.value
    for depth, key in enumerate(keys[:-1]):
        child = container.setdefault(key, {})
        if not isinstance(child, dict):
            raise _set_problem(arg, "is not a mapping, so it has no keys to set",
                               json_path(path[: depth + 1]))
        container = child
    container[keys[-1]] = copy.deepcopy(value)
    where = Location(_set_source(arg))
    for table in (doc.values, doc.keys):
        for old in [p for p in table if p[: len(path)] == path]:
            del table[old]
    for sub in _paths(value, path):
        doc.values[sub] = where
    for depth in range(1, len(path) + 1):
        doc.keys.setdefault(path[:depth], where)
        doc.values.setdefault(path[:depth], where)
    return doc


def compose(path: Path, sets: tuple[str, ...] = (), display: str | None = None) -> Document:
    doc = load_file(path, display or str(path))
    for arg in sets:
        doc = apply_set(doc, arg)
    return doc
