"""Check each stage's `run` reference and validate its `config`, without importing the module.

`launch check` must not import torch, and a stage module usually does. So the function is found
in the module's source (a top-level `def`, assignment or import that binds the name, read with
`ast`), and its config schema is the sidecar file `<module>.<function>.schema.json` beside the
module, as for recipes. Without a sidecar, any mapping is accepted. A module that is not Python
source (an extension module) is imported to look the name up.
"""

from __future__ import annotations

import ast
from typing import Any

from launcher.errors import Problem
from launcher.spec.explain_errors import did_you_mean, schema_problems
from launcher.spec.normalise import integers
from launcher.spec.recipe_config import sidecar_schema
from launcher.spec.refs import RefError, import_ref, module_file, split
from launcher.spec.yamlpos import Document


def top_level_names(source: str) -> list[str]:
    """The names a module binds at its top level: functions, classes, assignments, imports."""
    names: list[str] = []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names += [(a.asname or a.name).split(".")[0] for a in node.names]
    return names


def find_function(ref: str) -> None:
    """Raise RefError when `module:function` names no module, or a module without the name."""
    module, name = split(ref)
    origin = module_file(module)
    if origin is None or origin.suffix != ".py":
        import_ref(ref)  # not Python source: only importing it can tell
        return
    try:
        names = top_level_names(origin.read_text("utf-8"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise RefError(f"cannot read {module!r}: {type(exc).__name__}: {exc}") from None
    if name not in names:
        functions = [n for n in names if not n.startswith("_")]
        raise RefError(f"{module!r} has no {name!r}{did_you_mean(name, functions)}")


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
            find_function(stage["run"])
            schema = _schema(stage["run"])
        except RefError as exc:
            problems.append(Problem(doc.where(where + ("run",)), f"$.stages.{name}.run", str(exc)))
            continue
        configs[name] = integers(schema, stage["config"])
        problems += schema_problems(schema, configs[name], doc, base=where + ("config",))
    return configs, problems
