"""Validate `train.config` against the recipe's own JSON Schema, with positions in the spec.

A recipe publishes its schema as `config_schema` on the class. So that `launch check` need
not import the recipe (and torch with it), a file `<module>.<Class>.schema.json` beside the
module is read instead when it exists; launcher's own recipes ship one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from launcher.errors import Problem
from launcher.spec.explain_errors import schema_problems
from launcher.spec.normalise import integers
from launcher.spec.refs import RefError, import_ref, module_file, split
from launcher.spec.yamlpos import Document


def _sidecar(ref: str) -> Path | None:
    module, name = split(ref)
    origin = module_file(module)
    if origin is None:
        return None
    path = origin.with_name(f"{origin.stem}.{name}.schema.json")
    return path if path.is_file() else None


def sidecar_schema(ref: str) -> dict[str, Any] | None:
    """The schema in `<module>.<name>.schema.json` beside the module, if there is one."""
    sidecar = _sidecar(ref)
    return None if sidecar is None else json.loads(sidecar.read_text("utf-8"))


def recipe_schema(ref: str) -> dict[str, Any]:
    """The recipe's config schema, from its sidecar file or else from the class itself."""
    found = sidecar_schema(ref)
    if found is not None:
        return found
    return getattr(import_ref(ref), "config_schema", None) or {"type": "object"}


def checked_config(raw: dict[str, Any], doc: Document) -> tuple[dict[str, Any], list[Problem]]:
    """train.config with integers normalised by the recipe's schema, and its problems; `raw` is
    the resolved spec."""
    try:
        schema = recipe_schema(raw["train"]["recipe"])
    except RefError as exc:
        return raw["train"]["config"], [Problem(doc.where(("train", "recipe")), "$.train.recipe", str(exc))]
    config = integers(schema, raw["train"]["config"])
    return config, schema_problems(schema, config, doc, base=("train", "config"))
