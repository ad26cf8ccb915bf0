"""Validate `train.config` against the recipe's own JSON Schema, with positions in the spec.

A recipe publishes its schema as `config_schema` on the class. So that `launch check` need
not import the recipe (and torch with it), a file `<module>.<Class>.schema.json` beside the
module is read instead when it exists; launcher's own recipes ship one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from launcher.errors import Problem
from launcher.spec.explain_errors import schema_problems
from launcher.spec.normalise import integers
from launcher.spec.refs import RefError, find_name, import_ref, module_file, split
from launcher.spec.yamlpos import Document


def _sidecar_path(ref: str) -> Path | None:
    """Where `<module>.<name>.schema.json` is or would be: beside the module's file."""
    module, name = split(ref)
    origin = module_file(module)
    return None if origin is None else origin.with_name(f"{origin.stem}.{name}.schema.json")


def _sidecar(ref: str) -> Path | None:
    path = _sidecar_path(ref)
    return path if path is not None and path.is_file() else None


def _sidecar_hint(ref: str) -> str:
    """How `check` could do without importing the recipe (and torch with it)."""
    path = _sidecar_path(ref)
    if path is None:
        return ""
    return (f"; a schema file beside the recipe, {os.path.relpath(path)}, holding its "
            "config_schema as JSON, lets check validate train.config without importing it")


def sidecar_schema(ref: str) -> dict[str, Any] | None:
    """The schema in `<module>.<name>.schema.json` beside the module, if there is one."""
    sidecar = _sidecar(ref)
    return None if sidecar is None else json.loads(sidecar.read_text("utf-8"))


def recipe_schema(ref: str) -> dict[str, Any]:
    """The recipe's config schema, from its sidecar file or else from the class itself; the
    class is looked for in the module's source first, so a misspelt one is named without
    importing anything."""
    find_name(ref)
    found = sidecar_schema(ref)
    if found is not None:
        return found
    try:
        recipe = import_ref(ref)
    except RefError as exc:
        raise RefError(f"{exc}{_sidecar_hint(ref)}") from None
    return getattr(recipe, "config_schema", None) or {"type": "object"}


def checked_config(raw: dict[str, Any], doc: Document) -> tuple[dict[str, Any], list[Problem]]:
    """train.config with integers normalised by the recipe's schema, and its problems; `raw` is
    the resolved spec."""
    try:
        schema = recipe_schema(raw["train"]["recipe"])
    except RefError as exc:
        return raw["train"]["config"], [Problem(doc.where(("train", "recipe")), "$.train.recipe", str(exc))]
    config = integers(schema, raw["train"]["config"])
    return config, schema_problems(schema, config, doc, base=("train", "config"))
