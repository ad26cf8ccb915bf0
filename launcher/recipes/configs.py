"""The example recipes' configs: schema files beside each module, and defaults filled in.

A recipe's and a stage function's config schemas live beside its module as
``<module>.<name>.schema.json``, so that `launch check` validates configs without importing
torch; the code reads the same files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def schema_beside(module_file: str, name: str) -> dict[str, Any]:
    """The schema `<module>.<name>.schema.json` beside the module file `module_file`."""
    path = Path(module_file)
    return json.loads(path.with_name(f"{path.stem}.{name}.schema.json").read_text("utf-8"))


def with_defaults(schema: dict[str, Any], config: dict[str, Any] | Any) -> dict[str, Any]:
    """`config` over the schema's defaults; a key the schema does not know is refused."""
    defaults = {name: prop["default"] for name, prop in schema["properties"].items()}
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(unknown)}")
    return defaults | dict(config)
