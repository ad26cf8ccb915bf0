"""schemas/job.schema.json checked against itself: metaschema, docs, defaults, and the examples."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from launcher.spec.normalise import apply_defaults
from launcher.spec.schema import Validator

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "schemas" / "job.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text("utf-8"))
JOBS = sorted(p.name for p in (ROOT / "jobs").glob("*.yaml"))
MODELINE = "# yaml-language-server: $schema="


def declared(schema: dict[str, Any], where: str = "$") -> Iterator[tuple[str, dict, bool]]:
    """(where, schema, required) for every property, $defs entry and additionalProperties schema,
    at every depth: through properties, items, anyOf and $defs."""
    required = set(schema.get("required", []))
    for name, sub in schema.get("properties", {}).items():
        yield f"{where}.{name}", sub, name in required
        yield from declared(sub, f"{where}.{name}")
    for name, sub in schema.get("$defs", {}).items():
        yield f"$defs.{name}", sub, True
        yield from declared(sub, f"$defs.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield f"{where}.*", schema["additionalProperties"], True
        yield from declared(schema["additionalProperties"], f"{where}.*")
    if isinstance(schema.get("items"), dict):
        yield from declared(schema["items"], f"{where}[]")
    for index, branch in enumerate(schema.get("anyOf", [])):
        yield from declared(branch, f"{where}<{index}>")


PROPERTIES = list(declared(SCHEMA))


def test_the_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_walk_finds_nested_properties() -> None:
    # The walk reaches properties inside anyOf branches and additionalProperties schemas.
    names = {where for where, _, _ in PROPERTIES}
    assert {"$.retries<1>.max_delay", "$.image.git.url", "$.env.*", "$defs.duration"} <= names


@pytest.mark.parametrize("where, schema", [(w, s) for w, s, _ in PROPERTIES])
def test_every_property_has_a_description(where: str, schema: dict) -> None:
    assert isinstance(schema.get("description"), str) and schema["description"].strip()


def inherited(dotted: str) -> dict:
    """The schema of the job's property that `x-inherit: dotted` names."""
    schema = SCHEMA
    for key in dotted.split("."):
        schema = next(b for b in [schema, *schema.get("anyOf", [])] if "properties" in b)
        schema = schema["properties"][key]
    return schema


@pytest.mark.parametrize("where, schema", [(w, s) for w, s, required in PROPERTIES if not required])
def test_every_optional_property_has_a_default_that_it_accepts(where: str, schema: dict) -> None:
    if "x-inherit" in schema:  # a stage's setting that is the job's unless it says otherwise
        assert "default" not in schema
        schema = {**schema, "default": inherited(schema["x-inherit"])["default"]}
    assert "default" in schema
    errors = [e.message for e in Validator(SCHEMA).evolve(schema=schema).iter_errors(schema["default"])]
    assert errors == []


def test_the_defaults_make_a_minimal_spec_complete_and_valid() -> None:
    minimal = {"version": 1, "name": "job", "train": {"recipe": "launcher.recipes.ppo:PPO"}}
    full = apply_defaults(SCHEMA, json.loads(json.dumps(minimal)))
    assert set(full) == set(SCHEMA["properties"])
    assert set(full["train"]) == set(SCHEMA["properties"]["train"]["properties"])
    assert list(Validator(SCHEMA).iter_errors(full)) == []


def test_the_examples_are_there() -> None:
    assert {"ppo.yaml", "ppo-multi-gpu.yaml", "ppo-multi-node.yaml", "ppo-gpu-snapshot.yaml"} <= set(JOBS)


@pytest.mark.parametrize("job", JOBS)
def test_every_example_passes_check(job: str, launch, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    assert launch("check", f"jobs/{job}") == (0, "", "1 spec ok\n")


@pytest.mark.parametrize("job", JOBS)
def test_every_example_names_the_schema_for_editors(job: str) -> None:
    first = (ROOT / "jobs" / job).read_text("utf-8").splitlines()[0]
    assert first.startswith(MODELINE)
    target = (ROOT / "jobs" / first[len(MODELINE):].strip()).resolve()
    assert target == SCHEMA_PATH.resolve()
