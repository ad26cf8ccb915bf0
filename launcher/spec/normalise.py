"""From a spec as written to the JobSpec's fields: integers, shorthand, defaults, units.

One rule for numbers: JSON Schema counts 3600.0 as an integer, so wherever the schema asks for
an integer (durations, sizes, counts, a recipe's own integer settings), an integral float is
accepted and becomes that int; the JobSpec, the app and the runtime only ever see the int.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import Any

from jsonschema import ValidationError

from launcher.spec import units
from launcher.spec.schema import ints_only, job_schema, validator_for
from launcher.spec.yamlpos import JsonPath, walk


def _integral_float(value: Any) -> bool:
    return isinstance(value, float) and value.is_integer()


def _every_error(errors: Iterable[ValidationError]) -> Iterator[ValidationError]:
    for error in errors:
        yield error
        yield from _every_error(error.context or ())


def _wants_integer(types: str | list[str]) -> bool:
    kinds = [types] if isinstance(types, str) else types
    return "integer" in kinds and "number" not in kinds


def integers(schema: dict[str, Any], value: Any) -> Any:
    """`value` (a copy) with each integral float made an int where `schema` asks for an integer.

    jsonschema itself finds the places: validated with integers that must be ints, each such
    float fails its `type` keyword (inside any anyOf branch, $ref or if/then too) at its path.
    """
    if not any(_integral_float(leaf) for _, leaf in walk(value)):
        return value  # the common case costs one walk
    value = copy.deepcopy(value)
    for error in _every_error(ints_only(validator_for(schema))(schema).iter_errors(value)):
        if error.validator == "type" and _wants_integer(error.validator_value) \
                and _integral_float(error.instance):
            _replace(value, tuple(error.absolute_path), int(error.instance))
    return value


def _replace(value: Any, path: JsonPath, new: Any) -> None:
    for key in path[:-1]:
        value = value[key]
    value[path[-1]] = new


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Fill the schema's declared defaults into `value` (in place), depth first."""
    if isinstance(value, dict):
        branch = next((s for s in schema.get("anyOf", []) if s.get("type") == "object"), schema)
        for key, sub in branch.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(sub, value[key])
    return value


def is_retries_shorthand(value: Any) -> bool:
    """`retries: N`: a bare integer that stands for max_retries."""
    return isinstance(value, int) and not isinstance(value, bool)


def expand(value: dict[str, Any]) -> dict[str, Any]:
    """A copy of the document with integers normalised and shorthand expanded, defaults not yet
    applied: what the schema validates."""
    raw = copy.deepcopy(integers(job_schema(), value))
    if is_retries_shorthand(raw.get("retries")):
        raw["retries"] = {"max_retries": raw["retries"]}
    return raw


def resolve(value: dict[str, Any]) -> dict[str, Any]:
    """The spec as written, in its own terms (4h stays 4h), with shorthand expanded and every
    default applied."""
    return apply_defaults(job_schema(), expand(value))


def fields(raw: dict[str, Any]) -> dict[str, Any]:
    """Turn a resolved, valid spec into the JobSpec's fields (seconds, MiB, lists)."""
    c, r, k, p = raw["compute"], raw["retries"], raw["keep_warm"], raw["checkpoint"]
    gpu, region = c["gpu"], c["region"]
    return {
        **raw,
        "compute": {"gpu": [gpu] if isinstance(gpu, str) else gpu or [],
                    "gpu_count": c["gpu_count"], "nodes": c["nodes"], "rdma": c["rdma"],
                    "cpu": float(c["cpu"]), "memory_mib": units.mebibytes(c["memory"]),
                    "timeout_s": units.seconds(c["timeout"]),
                    "region": [region] if isinstance(region, str) else region or [],
                    "cloud": c["cloud"]},
        "retries": {"max_retries": r["max_retries"],
                    "initial_delay_s": units.seconds(r["initial_delay"]),
                    "backoff_coefficient": float(r["backoff_coefficient"]),
                    "max_delay_s": units.seconds(r["max_delay"])},
        "keep_warm": {"min_containers": k["min_containers"], "max_containers": k["max_containers"],
                      "buffer_containers": k["buffer_containers"],
                      "scaledown_window_s": units.seconds(k["scaledown_window"])},
        "checkpoint": {"volume": p["volume"], "mount": p["mount"], "every_steps": p["every_steps"],
                       "every_s": None if p["every"] is None else units.seconds(p["every"]),
                       "keep_last": p["keep_last"], "resume": p["resume"],
                       "async_write": p["async"]},
    }
