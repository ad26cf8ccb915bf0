"""`--explain`: every resolved field with where its value came from, then what the job can cost.

Pure functions of a composed document, the validated spec and a price table, so the text is
tested exactly. Values print as YAML flow text: what a spec (or `--set`) would write.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from launcher.cost import breakdown
from launcher.errors import Location, printable
from launcher.render import yaml_value
from launcher.spec.model import JobSpec
from launcher.spec.normalise import resolve
from launcher.spec.schema import job_schema
from launcher.spec.yamlpos import Document, JsonPath

WIDTH = 48  # the value column of `path = value` lines; longer ones push their source right


def resolved(doc: Document, spec: JobSpec) -> dict[str, Any]:
    """The spec as written, shorthand expanded and defaults applied (in the spec's own terms),
    with integers as the JobSpec holds them (train.config's by the recipe's schema)."""
    raw = resolve(doc.value)
    raw.pop("extends", None)  # merged away while loading; its default `[]` would only mislead
    raw["train"]["config"] = spec.train.config
    if not raw.get("stages"):
        raw.pop("stages", None)  # no pipeline: train alone, as before stages existed
    for stage in spec.stages:
        raw["stages"][stage.name]["config"] = stage.config
    return raw


def leaves(value: Any, path: JsonPath = ()) -> Iterator[tuple[JsonPath, Any]]:
    """(path, value) of every leaf; lists and empty mappings are leaves, sorted by path."""
    if isinstance(value, dict) and value:
        for key in sorted(value, key=str):
            yield from leaves(value[key], path + (key,))
    else:
        yield path, value


def dotted(path: JsonPath) -> str:
    return ".".join(str(part) for part in path)


def assignment(path: JsonPath, value: Any) -> str:
    """`path = value`, printable: a key or value with control or bidi characters is escaped."""
    return printable(f"{dotted(path)} = {yaml_value(value)}")


def flat_lines(value: dict[str, Any]) -> list[str]:
    """`path = value` for every leaf, sorted: the resolved spec as a reviewer diffs it."""
    return [assignment(path, leaf) for path, leaf in leaves(value)]


def origin(doc: Document, path: JsonPath) -> str:
    """`FILE:LINE`, `--set PATH=VALUE` or `default`: who supplied the value at `path`."""
    where: Location | None = doc.values.get(path)
    if where is None and path == ("retries", "max_retries") and not isinstance(doc.value.get("retries"), dict):
        where = doc.values.get(("retries",))  # `retries: N` stands for max_retries
    if where is None and (inherited := inherited_from(path)) is not None:
        return f"the job's {inherited} ({origin(doc, tuple(inherited.split('.')))})"
    if where is None:
        return "default"
    return printable(where.source if where.line is None else f"{where.source}:{where.line}")


def inherited_from(path: JsonPath) -> str | None:
    """The job's field a stage's field takes its value from (`x-inherit`), if it does."""
    schema: dict[str, Any] = job_schema()
    for key in path:
        schema = schema.get("properties", {}).get(key, {})
    return schema.get("x-inherit")


def field_lines(doc: Document, spec: JobSpec) -> list[str]:
    return [f"  {assignment(path, leaf).ljust(WIDTH)}  {origin(doc, path)}"
            for path, leaf in leaves(resolved(doc, spec))]


def explain(doc: Document, spec: JobSpec, prices: dict[str, Any]) -> str:
    lines = [f"explain: {spec.name}: each resolved field = value, and where the value came from",
             *field_lines(doc, spec), *breakdown(spec, prices)]
    return "\n".join(lines) + "\n"
