"""The job spec's JSON Schema and the validator class that reads it (our keywords included)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator, ValidationError

from launcher.resources import read_text
from launcher.spec import units


def schema_text() -> str:
    return read_text("schemas", "job.schema.json")


@cache
def job_schema() -> dict[str, Any]:
    return json.loads(schema_text())


def _duration_bound(longer: bool) -> Any:
    # A keyword's function, as jsonschema calls it: (validator, value, instance, schema).
    def check(validator: Any, bound: int, instance: Any, schema: dict) -> Iterator[ValidationError]:  # noqa: ARG001
        value = units.seconds(instance)
        if value is None:
            return
        if longer and value > bound:
            yield ValidationError(f"{instance!r} is longer than the maximum of {units.human_seconds(bound)}")
        if not longer and value < bound:
            yield ValidationError(f"{instance!r} is shorter than the minimum of {units.human_seconds(bound)}")
    return check


@cache
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    """`pattern` with `$` meaning the end of the string, as in JSON Schema (ECMA-262).

    Python's `$` also matches before a final newline, which would let "name\\n" through every
    anchored pattern of the schema.
    """
    out, in_class, escaped = [], False, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "[]":
            in_class = char == "["
        elif char == "$" and not in_class:
            char = r"\Z"
        out.append(char)
    return re.compile("".join(out))


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict) -> Iterator[ValidationError]:  # noqa: ARG001
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


# Durations are strings or integers, so their ranges are keywords of our own (JSON Schema
# ignores unknown keywords, so editors still see a valid schema).
Validator = jsonschema.validators.extend(Draft202012Validator, {
    "x-min-seconds": _duration_bound(longer=False),
    "x-max-seconds": _duration_bound(longer=True),
    "pattern": _pattern,
})

def validator_for(schema: dict[str, Any]) -> Any:
    """The validator class for `schema`: ours, unless the schema names another dialect than
    ours in `$schema` (a recipe's config schema may), which then gets jsonschema's own."""
    named = jsonschema.validators.validator_for(schema, default=Validator)
    return Validator if named is Draft202012Validator else named


@cache
def ints_only(cls: Any) -> Any:
    """`cls`, except that an integer must be an int: 3600.0, which JSON Schema counts as an
    integer, fails its `type` keyword here, at its path (see normalise.integers)."""
    return jsonschema.validators.extend(cls, type_checker=cls.TYPE_CHECKER.redefine(
        "integer", lambda checker, value: isinstance(value, int) and not isinstance(value, bool)))
