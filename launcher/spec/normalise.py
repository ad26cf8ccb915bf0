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


_MISSING = object()


def _lookup(root: dict[str, Any], dotted: str) -> Any:
    """The value at `dotted` in `root`, or _MISSING (an invalid job section, reported apart)."""
    value: Any = root
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def inherit(schema: dict[str, Any], value: Any, root: dict[str, Any]) -> Any:
    """Fill each missing property whose schema says `x-inherit: PATH` with the value at PATH in
    `root` (in place, after `apply_defaults` filled root): a stage's compute, retries and
    snapshot are the job's unless the stage says otherwise."""
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "x-inherit" in sub:
                found = _lookup(root, sub["x-inherit"])
                if found is not _MISSING:
                    value[key] = copy.deepcopy(found)
            if key in value:
                inherit(sub, value[key], root)
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
    default applied, a stage's inherited values included."""
    return with_defaults(expand(value))


def with_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` (expanded) with the schema's defaults, then what stages inherit from the job."""
    given = raw.get("stages")
    written = {name: dict(stage) for name, stage in given.items()
               if isinstance(stage, dict)} if isinstance(given, dict) else {}
    raw = apply_defaults(job_schema(), raw)
    stages = raw.get("stages")
    if not isinstance(stages, dict):
        return raw  # the schema reports it
    for name in [name for name, stage in stages.items() if stage is None]:
        del stages[name]  # `prepare: null` (the default): no such stage
    if not all(isinstance(s, dict) for s in stages.values()):
        return raw
    inherit(job_schema()["properties"]["stages"], stages, raw)
    for name, stage in stages.items():
        gpu = stage.get("compute", {}).get("gpu") if isinstance(stage.get("compute"), dict) else None
        if "snapshot" not in written.get(name, {}) and stage.get("snapshot") == "gpu" and gpu is None:
            stage["snapshot"] = "cpu"  # the job's GPU snapshot means nothing on a CPU stage
    return raw


def _gpus(gpu: str | list[str] | None) -> list[str]:
    return [gpu] if isinstance(gpu, str) else gpu or []


def _compute(c: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """Compute fields; a stage's (no nodes) takes nodes, region and cloud from the `job`'s."""
    region = job["region"]
    return {"gpu": _gpus(c["gpu"]), "gpu_count": c["gpu_count"], "nodes": c.get("nodes", 1),
            "rdma": c.get("rdma", False), "cpu": float(c["cpu"]),
            "memory_mib": units.mebibytes(c["memory"]), "timeout_s": units.seconds(c["timeout"]),
            "region": [region] if isinstance(region, str) else region or [], "cloud": job["cloud"]}


def _retries(r: dict[str, Any], max_retries: int | None = None) -> dict[str, Any]:
    return {"max_retries": r["max_retries"] if max_retries is None else max_retries,
            "initial_delay_s": units.seconds(r["initial_delay"]),
            "backoff_coefficient": float(r["backoff_coefficient"]),
            "max_delay_s": units.seconds(r["max_delay"])}


def _stages(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The stages in the order they run, each with its name."""
    stages = raw.get("stages") or {}
    return [{"name": name, "run": stages[name]["run"],
             "compute": _compute(stages[name]["compute"], raw["compute"]),
             "retries": _retries(raw["retries"], stages[name]["retries"]),
             "snapshot": stages[name]["snapshot"], "config": stages[name]["config"],
             "inputs": stages[name].get("inputs", []),
             **({"checkpoint": stages[name]["checkpoint"]} if name == "evaluate" else {})}
            for name in STAGE_ORDER if name in stages]


STAGE_ORDER = ("prepare", "evaluate")  # train runs between them


def fields(raw: dict[str, Any]) -> dict[str, Any]:
    """Turn a resolved, valid spec into the JobSpec's fields (seconds, MiB, lists)."""
    c, r, k, p = raw["compute"], raw["retries"], raw["keep_warm"], raw["checkpoint"]
    return {
        **raw,
        "compute": _compute(c, c),
        "retries": _retries(r),
        "stages": _stages(raw),
        "keep_warm": {"min_containers": k["min_containers"], "max_containers": k["max_containers"],
                      "buffer_containers": k["buffer_containers"],
                      "scaledown_window_s": units.seconds(k["scaledown_window"])},
        "checkpoint": {"volume": p["volume"], "mount": p["mount"], "every_steps": p["every_steps"],
                       "every_s": None if p["every"] is None else units.seconds(p["every"]),
                       "keep_last": p["keep_last"], "resume": p["resume"],
                       "async_write": p["async"], "keep_best": p["keep_best"]},
    }
