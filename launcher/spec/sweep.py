"""A sweep spec: a spec that `extends` a job and adds `sweep:`, checked as far as `check` can.

The schema (schemas/job.schema.json, `sweep` and `$defs/sweep_parameter`) checks the section's
shape; this module checks what it cannot say, each problem located at the parameter that
causes it: every parameter path and every value a parameter can take (a range's bounds, each
choice) are applied to the job as `--set` would apply them and the job validated again, so a
path the job's schema or the recipe's config schema lacks, or a value outside their ranges, is
refused with the job's own message; then the rules across fields (grid values with tpe, a
range with method grid, more grid trials than combinations) and the objective (the sweep's, or
the recipe's `objective` class attribute, read from its source: nothing is imported).

Standard library and the spec package only: `check` and `--dry-run` of a sweep import neither
torch nor Optuna.
"""

from __future__ import annotations

import ast
import copy
import json
import math
from typing import Any

import yaml

from launcher.errors import Problem, SpecError
from launcher.spec.compose import apply_set
from launcher.spec.normalise import integers
from launcher.spec.refs import module_file, split
from launcher.spec.schema import job_schema
from launcher.spec.sweep_model import DEFAULT_TRIALS, KINDS, MAX_GRID, Parameter, Sweep
from launcher.spec.yamlpos import Document, JsonPath, json_path

# Where trials must agree: the hardware (one worst case prices every trial), the volume and
# the job's identity, and prepare's inputs (it runs once for the whole sweep).
FIXED = {
    "name": "the trials' job folders are named after the sweep",
    "version": "it is the spec's format",
    "sweep": "a sweep cannot sweep itself",
    "budget_usd": "the sweep's budget is sweep.budget_usd",
    "compute": "every trial runs on the same hardware, so that one worst case prices them all",
    "image": "every trial runs the same image",
    "checkpoint.volume": "every trial keeps its folder on the sweep's volume",
    "checkpoint.mount": "every trial keeps its folder on the sweep's volume",
    "stages.prepare": "prepare runs once for the whole sweep, and every trial reads its data",
}


def without_sweep(doc: Document) -> Document:
    """The job a sweep's trials run: the document without `sweep:` and its positions."""
    job = Document({k: copy.deepcopy(v) for k, v in doc.value.items() if k != "sweep"})
    for table, out in ((doc.values, job.values), (doc.keys, job.keys)):
        out.update({p: w for p, w in table.items() if not p or p[0] != "sweep"})
    return job


def set_arg(path: str, value: Any) -> str:
    """The `--set` argument that sets `value` at `path` (YAML text: 1e-05 would be a string)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30)
    return f"{path}={text.removesuffix(chr(10)).removesuffix(chr(10) + '...')}"


def with_params(doc: Document, params: dict[str, Any]) -> Document:
    """`doc` (a job, without sweep) with each parameter set as `--set PATH=VALUE` sets it."""
    out = Document(copy.deepcopy(doc.value), dict(doc.values), dict(doc.keys))
    for path, value in params.items():
        out = apply_set(out, set_arg(path, value))
    return out


def _parameter(path: str, raw: dict[str, Any]) -> Parameter:
    kind = next(k for k in KINDS if raw.get(k) is not None)
    if kind in ("choice", "grid"):
        return Parameter(path, kind, values=tuple(raw[kind]), step=raw.get("step"))
    low, high = raw[kind]
    return Parameter(path, kind, low, high, raw.get("step"))


def is_sweep(doc: Document) -> bool:
    return isinstance(doc.value, dict) and isinstance(doc.value.get("sweep"), dict)


def _at(doc: Document, path: JsonPath, message: str, key: bool = False) -> Problem:
    return Problem(doc.where(path, key=key), json_path(path), message)


def _fixed_reason(path: str) -> str | None:
    return next((why for root, why in FIXED.items() if path == root or path.startswith(root + ".")), None)


def _shape_problems(doc: Document, sweep: dict[str, Any], params: list[Parameter]) -> list[Problem]:
    """Rules within the section: bounds in order, steps, grid against the method."""
    problems = []
    method = sweep.get("method") or "random"
    for p in params:
        at = ("sweep", "parameters", p.path, p.kind)
        if p.kind in ("log_uniform", "uniform", "int") and not p.low < p.high:  # type: ignore[operator]
            problems.append(_at(doc, at, f"the low bound {p.low!r} must be below the high bound {p.high!r}"))
        if p.kind == "log_uniform" and p.low <= 0:  # type: ignore[operator]
            problems.append(_at(doc, at, f"a log-uniform range needs positive bounds; {p.low!r} is not"))
        if p.step is not None and p.kind not in ("int", "uniform"):
            problems.append(_at(doc, ("sweep", "parameters", p.path, "step"),
                                f"step goes with int or uniform, not {p.kind}", key=True))
        if p.kind == "int" and p.step is not None and not float(p.step).is_integer():
            problems.append(_at(doc, ("sweep", "parameters", p.path, "step"), f"an int range needs a whole step, not {p.step!r}"))
        if p.kind == "grid" and method == "tpe":
            problems.append(_at(doc, at, "grid values are swept by method grid; with tpe, use choice", key=True))
        values = p.grid_values()
        if method == "grid" and values is not None and len(values) > MAX_GRID:
            problems.append(_at(doc, at, f"method grid would list {len(values)} values; at most "
                                         f"{MAX_GRID}: use a step, or method random or tpe", key=True))
        if method == "grid" and values is None:
            problems.append(_at(doc, at, f"method grid needs a finite list of values: use grid or "
                                         f"choice (or int), or method random or tpe for a {p.kind} range", key=True))
    return problems


def _trials_problem(doc: Document, sweep: dict[str, Any], params: list[Parameter]) -> Problem | None:
    if sweep.get("method") != "grid" or sweep.get("trials") is None:
        return None
    sizes = [p.grid_values() for p in params]
    if any(s is None for s in sizes):
        return None
    combos = math.prod(len(s) for s in sizes)  # type: ignore[arg-type]
    if sweep["trials"] > combos:
        return _at(doc, ("sweep", "trials"), f"the grid has {combos} combinations, so {sweep['trials']} "
                                             "trials would repeat some; leave trials out to run each once")
    return None


def _value_problems(doc: Document, job: Document, params: list[Parameter]) -> list[Problem]:
    """Each parameter's path and values, applied to the job as --set would, and the job checked."""
    from launcher.spec.validate import check  # validate imports nothing of this module

    problems = []
    for p in params:
        at = ("sweep", "parameters", p.path)
        why = _fixed_reason(p.path)
        if why is not None:
            problems.append(_at(doc, at, f"cannot be swept: {why}", key=True))
            continue
        for value in p.candidates():
            arg = set_arg(p.path, value)
            try:
                check(apply_set(Document(copy.deepcopy(job.value), dict(job.values), dict(job.keys)), arg))
            except SpecError as exc:
                mine = [found for found in exc.problems if found.location.source.startswith("--set ")]
                problems += [_at(doc, at, f"value {json.dumps(value)}: " + (
                    found.message if found.path == json_path(tuple(p.path.split("."))) else
                    f"{found.path}: {found.message}"), key=True) for found in mine]
                if mine:
                    break  # one value's message says what the path or range is; the next adds nothing
    return problems


def recipe_objective(ref: str) -> tuple[str, str] | None:
    """The recipe class's `objective = ("metric", "min"|"max")`, read from its source."""
    module, name = split(ref)
    path = module_file(module)
    if path is None:
        return None
    try:
        tree = ast.parse(path.read_text("utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            for stmt in node.body:
                target = stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else \
                    stmt.target if isinstance(stmt, ast.AnnAssign) else None
                if isinstance(target, ast.Name) and target.id == "objective" and stmt.value is not None:
                    try:
                        found = ast.literal_eval(stmt.value)
                    except ValueError:
                        return None
                    if (isinstance(found, tuple) and len(found) == 2 and isinstance(found[0], str)
                            and found[1] in ("min", "max")):
                        return found[0], found[1]
    return None


def check_sweep(doc: Document, recipe: str) -> Sweep:
    """The sweep of a composed sweep spec whose job checked valid; a SpecError lists its problems."""
    sweep = integers(job_schema(), doc.value)["sweep"]  # trials: 4.0 is 4
    params = [_parameter(path, raw) for path, raw in sweep["parameters"].items()]
    problems = _shape_problems(doc, sweep, params)
    trials = _trials_problem(doc, sweep, params)
    problems += [trials] if trials is not None else []
    problems += _value_problems(doc, without_sweep(doc), params)
    objective = sweep.get("objective")
    found = (objective["metric"], objective["direction"]) if objective else recipe_objective(recipe)
    if found is None:
        problems.append(_at(doc, ("sweep",), f"the recipe {recipe} declares no objective (a class "
                                             "attribute objective = (\"metric\", \"min\" or \"max\")); "
                                             "set sweep.objective: {metric: NAME, direction: min|max}", key=True))
    if problems:
        raise SpecError(sorted(set(problems), key=lambda p: (p.location.line or 0, p.location.col or 0, p.message)))
    made = Sweep(method=sweep.get("method") or "random", trials=0, parallel=sweep.get("parallel") or 1,
                 budget_usd=sweep.get("budget_usd"), early_stop=sweep.get("early_stop") or "none",
                 seed=sweep.get("seed") or 0, metric=found[0], direction=found[1],  # type: ignore[index]
                 objective_from="sweep" if objective else "recipe", parameters=tuple(params))
    default = made.grid_size() if made.method == "grid" else DEFAULT_TRIALS
    return Sweep(**{**made.__dict__, "trials": sweep.get("trials") or default})
