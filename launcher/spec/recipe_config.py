"""Validate `train.config` against the recipe's own JSON Schema, with positions in the spec.

A recipe publishes its schema as `config_schema` on the class. So that `launch check` need
not import the recipe (and torch with it), a file `<module>.<Class>.schema.json` beside the
module is read instead when it exists; launcher's own recipes ship one.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

from launcher.errors import Problem
from launcher.spec.yamlpos import Document


class RecipeNotFound(Exception):
    pass


def _sidecar(module: str, cls: str) -> Path | None:
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise RecipeNotFound(f"cannot import {module!r}: {exc}") from None
    if found is None or found.origin is None:
        raise RecipeNotFound(f"no module named {module!r}")
    path = Path(found.origin).with_name(f"{Path(found.origin).stem}.{cls}.schema.json")
    return path if path.is_file() else None


def recipe_schema(ref: str) -> dict[str, Any]:
    """The recipe's config schema, from its sidecar file or else from the class itself."""
    module, _, cls = ref.partition(":")
    if os.getcwd() not in sys.path:  # a user's recipe module next to their specs
        sys.path.append(os.getcwd())
    sidecar = _sidecar(module, cls)
    if sidecar is not None:
        return json.loads(sidecar.read_text("utf-8"))
    try:
        recipe = getattr(importlib.import_module(module), cls)
    except AttributeError:
        raise RecipeNotFound(f"{module!r} has no class {cls!r}") from None
    except Exception as exc:
        raise RecipeNotFound(f"cannot import {module!r}: {type(exc).__name__}: {exc}") from None
    return getattr(recipe, "config_schema", None) or {"type": "object"}


def config_problems(raw: dict[str, Any], doc: Document, explain: Any, validator: Any) -> list[Problem]:
    """Problems in train.config; `raw` is the document with defaults applied."""
    ref = raw["train"]["recipe"]
    try:
        schema = recipe_schema(ref)
    except RecipeNotFound as exc:
        return [Problem(doc.where(("train", "recipe")), "$.train.recipe", str(exc))]
    # Wrap the recipe's schema so error paths are absolute in the whole spec.
    wrapper = {"properties": {"train": {"properties": {"config": schema}}}}
    return [p for e in validator(wrapper).iter_errors(raw) for p in explain(e, doc)]
