"""Check each stage's `run` reference and validate its `config`, without importing the module.

`launch check` must not import torch, and a stage module usually does. So the function is found
in the module's source (a top-level `def`, assignment or import that binds the name, read with
`ast`), and its config schema is the sidecar file `<module>.<function>.schema.json` beside the
module, as for recipes. Without a sidecar, any mapping is accepted. A module that is not Python
source (an extension module) is imported to look the name up.
"""

from __future__ import annotations

from typing import Any

from launcher.errors import Problem
from launcher.spec.explain_errors import schema_problems
from launcher.spec.normalise import integers
from launcher.spec.recipe_config import sidecar_schema
from launcher.spec.refs import RefError, find_name
from launcher.spec.yamlpos import Document


def _schema(ref: str) -> dict[str, Any]:
    return sidecar_schema(ref) or {"type": "object"}


def checked_stage_configs(raw: dict[str, Any], doc: Document) -> tuple[dict[str, Any], list[Problem]]:
    """Each stage's config, integers normalised by its schema, and the problems of every stage's
    reference and config; `raw` is the resolved spec."""
    configs: dict[str, Any] = {}
    problems: list[Problem] = []
    for name, stage in (raw.get("stages") or {}).items():
        where = ("stages", name)
        try:
            find_name(stage["run"])
            schema = _schema(stage["run"])
        except RefError as exc:
            problems.append(Problem(doc.where(where + ("run",)), f"$.stages.{name}.run", str(exc)))
            continue
        configs[name] = integers(schema, stage["config"])
        problems += schema_problems(schema, configs[name], doc, base=where + ("config",))
    return configs, problems
