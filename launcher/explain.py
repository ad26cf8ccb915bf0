"""`--explain`: every resolved field with where its value came from, then what the job can cost.

Pure functions of a composed document, the validated spec and a price table, so the text is
tested exactly. Values print as YAML flow text: what a spec (or `--set`) would write.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from launcher.errors import Location
from launcher.plan import cost
from launcher.render import yaml_value
from launcher.spec.model import JobSpec
from launcher.spec.units import human_seconds
from launcher.spec.validate import apply_defaults, job_schema
from launcher.spec.yamlpos import Document, JsonPath

WIDTH = 48  # the value column of `path = value` lines; longer ones push their source right


def resolved(doc: Document) -> dict[str, Any]:
    """The spec as written, shorthand expanded and defaults applied (in the spec's own terms)."""
    raw = copy.deepcopy(doc.value)
    if _retries_shorthand(doc):
        raw["retries"] = {"max_retries": raw["retries"]}
    raw = apply_defaults(job_schema(), raw)
    raw.pop("extends", None)  # merged away while loading; its default `[]` would only mislead
    return raw


def _retries_shorthand(doc: Document) -> bool:
    """`retries: N`: a bare integer that stands for max_retries."""
    value = doc.value.get("retries")
    return isinstance(value, int) and not isinstance(value, bool)


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
    return f"{dotted(path)} = {yaml_value(value)}"


def flat_lines(value: dict[str, Any]) -> list[str]:
    """`path = value` for every leaf, sorted: the resolved spec as a reviewer diffs it."""
    return [assignment(path, leaf) for path, leaf in leaves(value)]


def origin(doc: Document, path: JsonPath) -> str:
    """`FILE:LINE`, `--set PATH=VALUE` or `default`: who supplied the value at `path`."""
    where: Location | None = doc.values.get(path)
    if where is None and path == ("retries", "max_retries") and _retries_shorthand(doc):
        where = doc.values.get(("retries",))
    if where is None:
        return "default"
    return where.source if where.line is None else f"{where.source}:{where.line}"


def field_lines(doc: Document) -> list[str]:
    return [f"  {assignment(path, leaf).ljust(WIDTH)}  {origin(doc, path)}"
            for path, leaf in leaves(resolved(doc))]


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def cost_lines(spec: JobSpec, prices: dict[str, Any]) -> list[str]:
    """Per hour running, worst case for one launch, keep-warm idle per day; GPU time only."""
    c, money = spec.compute, cost(spec, prices)
    head = (f"cost (GPU only; prices {prices['date']}, {prices['source']}, "
            f"{prices['currency']} {prices['unit']}):")
    if money.gpu_type is None:
        return [head, "  CPU only: no GPU cost (CPU and memory are billed too, not priced here)"]
    rate = (f"no price on file for {money.gpu_type}" if money.price is None
            else f"{money.gpu_type} at ${money.price:,.4f}")
    fallback = f"; priced at the first choice of {len(c.gpu)}" if len(c.gpu) > 1 else ""
    return [
        head,
        f"  per hour running    {money.running()} ({rate} × {_plural(c.gpu_count, 'GPU')}"
        f" × {_plural(c.nodes, 'node')}{fallback})",
        f"  worst case launch   {money.worst_case()} "
        f"({human_seconds(c.timeout_s)} timeout × {_plural(money.attempts, 'attempt')})",
        f"  keep-warm idle      {money.idle_per_day()} a day "
        f"({_plural(money.idle_containers, 'container')} × {_plural(c.gpu_count, 'GPU')} × 24h)",
    ]


def explain(doc: Document, spec: JobSpec, prices: dict[str, Any]) -> str:
    lines = [f"explain: {spec.name}: each resolved field = value, and where the value came from",
             *field_lines(doc), *cost_lines(spec, prices)]
    return "\n".join(lines) + "\n"
