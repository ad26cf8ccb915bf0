"""launcher.spec.normalise: one rule for numbers, the same in check, --dry-run and the runtime.

JSON Schema counts 3600.0 as an integer, so every field the schema types as an integer (counts,
durations, sizes) takes an integral float and the JobSpec holds the int. These passed `check`
on main and then crashed --dry-run (timeout), rendered memory=None (memory), dropped the time
cadence (every), skipped the multi-node rule (nodes) or failed at run time (keep_last). The
cases are generated from the schema, so a new integer field is covered without a new test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from launcher.errors import SpecError
from launcher.load import load_spec
from launcher.render import CodeSource, render
from launcher.spec import yamlpos
from launcher.spec.normalise import integers
from launcher.spec.schema import job_schema
from launcher.spec.validate import validate

SCHEMA = job_schema()
# Both stages, on GPUs, so that every stage field (gpu_count included) has a valid context;
# short stage timeouts keep the pipeline within the driver's 24 h (no warning).
STAGE = {"compute": {"gpu": "T4", "timeout": "10m"}}
MINIMAL = {"version": 1, "name": "numbers", "image": {"code": "local"},
           "train": {"recipe": "launcher.recipes.ppo:PPO"},
           "stages": {"prepare": {"run": "launcher.recipes.digits:prepare", **STAGE},
                      "evaluate": {"run": "launcher.recipes.digits:evaluate", **STAGE}}}


def _ref(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    return {**SCHEMA["$defs"][ref.removeprefix("#/$defs/")], **schema} if ref else schema


def integer_fields(schema: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict]]:
    """(path, schema) of every place the job schema takes an integer: through properties,
    $refs and anyOf branches (retries: N is one)."""
    schema = _ref(schema)
    types = schema.get("type", [])
    if "integer" in ([types] if isinstance(types, str) else types):
        yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from integer_fields(sub, path + (name,))
    for branch in schema.get("anyOf", []):
        yield from integer_fields(branch, path)


FIELDS = sorted({path: schema for path, schema in integer_fields(SCHEMA)}.items())


def a_valid_integer(schema: dict[str, Any]) -> int:
    """A value the field accepts: its integer default, else 1 or its lower bound if higher."""
    default = schema.get("default")
    if isinstance(default, int) and not isinstance(default, bool):
        return default
    return max([1, *(schema[b] for b in ("x-min-seconds", "minimum") if isinstance(schema.get(b), int))])


def spec_with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    spec = json.loads(json.dumps(MINIMAL))
    if path[0] == "sweep":  # a sweep's integers, in a sweep that is valid otherwise
        spec["sweep"] = {"objective": {"metric": "loss", "direction": "min"},
                         "parameters": {"train.seed": {"choice": [0, 1]}}}
    here = spec
    for key in path[:-1]:
        here = here.setdefault(key, {})
    here[path[-1]] = value
    return spec


def write(folder: Path, name: str, spec: dict[str, Any]) -> Path:
    path = folder / name
    path.write_text(json.dumps(spec), "utf-8")  # JSON keeps 3600.0 a float, as YAML does
    return path


def test_the_walk_finds_every_kind_of_integer_field() -> None:
    found = {".".join(path) for path, _ in FIELDS}
    assert {"version", "compute.gpu_count", "compute.nodes", "compute.memory", "compute.timeout",
            "retries", "retries.max_retries", "retries.initial_delay", "keep_warm.max_containers",
            "keep_warm.scaledown_window", "checkpoint.every", "checkpoint.every_steps",
            "checkpoint.keep_last", "train.steps", "train.seed", "stages.prepare.retries",
            "stages.evaluate.compute.gpu_count", "stages.evaluate.compute.timeout"} <= found


@pytest.mark.parametrize("path, schema", FIELDS, ids=[".".join(p) for p, _ in FIELDS])
def test_an_integral_float_is_the_integer_everywhere(tmp_path: Path, launch, path: tuple[str, ...],
                                                     schema: dict) -> None:
    number = a_valid_integer(schema)
    as_int = load_spec(write(tmp_path, "int.yaml", spec_with(path, number)))
    as_float_path = write(tmp_path, "float.yaml", spec_with(path, float(number)))
    as_float = load_spec(as_float_path)
    # The JobSpec holds the int (to_dict's JSON tells 3600 from 3600.0; == does not).
    assert json.dumps(as_float.spec.to_dict()) == json.dumps(as_int.spec.to_dict())
    # So the app (and the runtime, which rebuilds the JobSpec from it) sees the same values.
    assert render(as_float.spec, "job.yaml", CodeSource("local")) == \
        render(as_int.spec, "job.yaml", CodeSource("local"))
    # `check` says the same of both (a warning that one value draws, the other draws too).
    as_int_path = tmp_path / "int.yaml"
    checked = launch("check", str(as_float_path))
    assert checked.code == 0 and checked.err.endswith("1 spec ok\n")
    unplaced = lambda err: re.sub(r"\S+\.yaml:\d+:\d+: ", "", err)  # noqa: E731  ("3600.0" is longer)
    assert unplaced(checked.err) == unplaced(launch("check", str(as_int_path)).err)
    assert launch("--dry-run", str(as_float_path)).code == 0


@pytest.mark.parametrize("path", [p for p, _ in FIELDS if p != ("version",)],
                         ids=[".".join(p) for p, _ in FIELDS if p != ("version",)])
def test_a_fraction_is_refused_where_an_integer_is_asked_for(tmp_path: Path, path: tuple[str, ...]) -> None:
    spec = validate_text(json.dumps(spec_with(path, 2.5)))
    assert isinstance(spec, SpecError)
    assert any(p.path.startswith("$." + ".".join(path)) and "2.5 is not of type" in p.message
               for p in spec.problems), spec


def validate_text(text: str) -> Any:
    try:
        return validate(yamlpos.parse(text, "t.yaml"))
    except SpecError as exc:
        return exc


def test_the_recipe_config_takes_integers_by_the_recipes_own_schema() -> None:
    spec = validate(yamlpos.parse(
        "version: 1\nname: j\ntrain:\n  recipe: launcher.recipes.ppo:PPO\n"
        "  config: {num_envs: 4.0, hidden_sizes: [32.0, 16], max_grad_norm: 1.0}\n", "t.yaml"))
    assert json.dumps(spec.train.config) == '{"num_envs": 4, "hidden_sizes": [32, 16], "max_grad_norm": 1.0}'


def test_integers_touches_only_what_the_schema_types_as_integer() -> None:
    schema = {"properties": {"n": {"type": "integer"}, "x": {"type": "number"},
                             "d": {"anyOf": [{"type": "null"}, {"type": ["integer", "string"]}]},
                             "free": {}}}
    value = {"n": 3.0, "x": 3.0, "d": 60.0, "free": 1.0, "other": 2.0}
    assert json.dumps(integers(schema, value)) == \
        '{"n": 3, "x": 3.0, "d": 60, "free": 1.0, "other": 2.0}'
    assert json.dumps(value) == '{"n": 3.0, "x": 3.0, "d": 60.0, "free": 1.0, "other": 2.0}'  # a copy
