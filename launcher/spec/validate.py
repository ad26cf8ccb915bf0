"""Validate a composed document against the JSON Schema, then the checks a schema cannot say.

Every problem is collected (schema and semantic alike) and reported at once, location first.
"""

from __future__ import annotations

import copy
import datetime
import difflib
import json
import math
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator, ValidationError
from jsonschema.exceptions import best_match

from launcher import __version__
from launcher.errors import Problem, SpecError
from launcher.resources import read_text
from launcher.spec import units
from launcher.spec.credentials import looks_like_credential, url_has_credentials
from launcher.spec.model import JobSpec
from launcher.spec.recipe_config import config_problems
from launcher.spec.yamlpos import Document, JsonPath, json_path

FORMAT_VERSION = 1
RECIPE_REF = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*\Z")


def schema_text() -> str:
    return read_text("schemas", "job.schema.json")


@cache
def job_schema() -> dict[str, Any]:
    return json.loads(schema_text())


def _duration_bound(longer: bool) -> Any:
    def check(validator: Any, bound: int, instance: Any, schema: dict) -> Iterator[ValidationError]:
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

    Python's `$` also matches before a final newline, which would let "name\n" through every
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


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


# Durations are strings or integers, so their ranges are keywords of our own (JSON Schema
# ignores unknown keywords, so editors still see a valid schema).
Validator = jsonschema.validators.extend(Draft202012Validator, {
    "x-min-seconds": _duration_bound(longer=False),
    "x-max-seconds": _duration_bound(longer=True),
    "pattern": _pattern,
})


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _branch_errors(error: ValidationError) -> list[ValidationError]:
    """The errors of the one anyOf/oneOf branch whose type fits the value, else the best one.

    A value that fits a branch's type is almost surely meant for it, so all of that branch's
    errors are the useful ones ("unknown key", "too long"), not "is not of type 'integer'".
    """
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context or []:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = [errs for errs in branches.values()
               if not any(e.validator == "type" and not e.relative_path for e in errs)]
    if not fitting:  # name every type the value could have, not just the first branch's
        kinds = [k for errs in branches.values() for e in errs
                 if e.validator == "type" and not e.relative_path
                 for k in ([e.validator_value] if isinstance(e.validator_value, str) else e.validator_value)]
        message = f"{error.instance!r} is not of type {', '.join(map(repr, dict.fromkeys(kinds)))}"
        return [ValidationError(message, validator="type", path=error.absolute_path,
                                instance=error.instance, schema={})]
    return fitting[0] if len(fitting) == 1 else [best_match(error.context)]


def _explain(error: ValidationError, doc: Document) -> Iterator[Problem]:
    path: JsonPath = tuple(error.absolute_path)
    where = doc.where(path)
    if error.validator in ("anyOf", "oneOf") and error.context:
        for sub in _branch_errors(error):
            yield from _explain(sub, doc)
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties", {}))
        for key in error.instance:
            if key not in known:
                yield Problem(doc.where(path + (key,), key=True), json_path(path),
                              f"unknown key {key!r}{_did_you_mean(key, known)}")
    elif error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        yield Problem(where, json_path(path), f"missing required key {missing!r}")
    elif error.validator == "pattern" and "propertyNames" in error.absolute_schema_path:
        yield Problem(doc.where(path + (error.instance,), key=True), json_path(path),
                      f"key {error.instance!r} {error.schema.get('x-pattern-hint', 'is not allowed')}")
    elif error.validator == "pattern" and "x-pattern-hint" in error.schema:
        yield Problem(where, json_path(path), f"{error.instance!r} {error.schema['x-pattern-hint']}")
    elif error.validator == "enum" and isinstance(error.instance, str):
        options = [o for o in error.validator_value if isinstance(o, str)]
        yield Problem(where, json_path(path), error.message + _did_you_mean(error.instance, options))
    elif error.validator == "enum" and isinstance(error.instance, bool):
        yield Problem(where, json_path(path), f"{error.message} (YAML reads unquoted yes/no/on/off "
                                              "as true/false: quote it)")
    elif "x-hint" in error.schema:
        yield Problem(where, json_path(path), f"{error.message} ({error.schema['x-hint']})")
    else:
        yield Problem(where, json_path(path), error.message)


def _version_problem(doc: Document) -> Problem | None:
    version = doc.value.get("version")
    where = doc.where(("version",))
    if "version" not in doc.value:
        return Problem(doc.where(()), "$", "missing required key 'version' (add 'version: 1')")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        return Problem(where, "$.version",
                       f"format version {version} needs a newer launcher "
                       f"(launcher {__version__} reads format version {FORMAT_VERSION})")
    if version != FORMAT_VERSION or isinstance(version, bool):
        return Problem(where, "$.version", f"{version!r} is not a format version (use 1)")
    return None


def _walk(value: Any, path: JsonPath = ()) -> Iterator[tuple[JsonPath, Any]]:
    yield path, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from _walk(item, path + (key,))


def _get(value: Any, path: JsonPath, kind: type | tuple[type, ...]) -> Any:
    """The value at `path` if every step exists and the leaf is of `kind`, else None."""
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    if isinstance(value, bool) and kind is int:
        return None
    return value if isinstance(value, kind) else None


def _semantic(raw: dict[str, Any], doc: Document) -> Iterator[Problem]:
    """Checks across fields; `raw` has defaults applied but may still be ill-typed."""
    def problem(path: JsonPath, message: str, key: bool = False) -> Problem:
        return Problem(doc.where(path, key=key), json_path(path), message)

    for path, value in _walk(doc.value):
        if isinstance(value, float) and not math.isfinite(value):
            yield problem(path, f"{value!r} is not a finite number")
        if isinstance(value, (datetime.date, bytes)):  # YAML timestamps and !!binary: not JSON
            kind = "binary data" if isinstance(value, bytes) else "a date"
            yield problem(path, f"YAML reads this as {kind}, which a spec cannot hold; "
                                "quote it to make it a string")
    nodes = _get(raw, ("compute", "nodes"), int) or 1
    has_gpu = _get(raw, ("compute", "gpu"), (str, list)) is not None
    if nodes > 1 and not has_gpu:
        yield problem(("compute", "nodes"), f"multi-node (nodes: {nodes}) needs a GPU; set compute.gpu")
    count = _get(raw, ("compute", "gpu_count"), int)
    if nodes > 1 and has_gpu and count is not None and count != 8:
        yield problem(("compute", "gpu_count"),
                      f"multi-node needs a full host per node: gpu_count must be 8, not {count}")
    for key in ("min_containers", "max_containers", "buffer_containers"):
        amount = _get(raw, ("keep_warm", key), int)
        if amount and nodes > 1 and amount % nodes:
            yield problem(("keep_warm", key), f"{amount} is not a multiple of compute.nodes ({nodes})")
    if _get(raw, ("snapshot",), str) == "gpu" and not has_gpu:
        yield problem(("snapshot",), "a GPU snapshot needs a GPU; set compute.gpu or use snapshot: cpu")
    ckpt = _get(raw, ("checkpoint",), dict)
    if ckpt is not None and ckpt.get("every_steps") is None and ckpt.get("every") is None:
        yield problem(("checkpoint",), "set at least one of every_steps and every, "
                                       "or checkpoints are never written")
    recipe = _get(raw, ("train", "recipe"), str)
    if recipe is not None and not RECIPE_REF.match(recipe):
        yield problem(("train", "recipe"),
                      f"{recipe!r} is not a recipe reference: use module:Class, "
                      "e.g. launcher.recipes.ppo:PPO")
    url = _get(raw, ("image", "git", "url"), str)
    if url is not None and url_has_credentials(url):  # never echoed: it would print the token
        yield problem(("image", "git", "url"), "holds credentials (user info before @); leave them "
                                               "out: the code is exported from this repository, and "
                                               "the URL is only shown, never fetched")
    for name in _get(raw, ("env",), dict) or {}:
        if isinstance(name, str) and looks_like_credential(name):
            yield problem(("env", name), f"{name!r} looks like a credential: put it in a Modal "
                                          "Secret and list the secret's name under secrets:",
                          key=True)


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Fill the schema's declared defaults into `value` (a copy), depth first."""
    if isinstance(value, dict):
        branch = next((s for s in schema.get("anyOf", []) if s.get("type") == "object"), schema)
        for key, sub in branch.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(sub, value[key])
    return value


def _normalise(raw: dict[str, Any]) -> dict[str, Any]:
    """Turn spec shorthand into the JobSpec's fields (seconds, MiB, tuples)."""
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
                       "keep_last": p["keep_last"], "resume": p["resume"]},
    }


def _sort_key(problem: Problem) -> tuple[str, int, int, str]:
    loc = problem.location
    return (loc.source, loc.line or 0, loc.col or 0, problem.message)


def validate(doc: Document, check_recipe: bool = True) -> JobSpec:
    """The JobSpec for a composed document, or a SpecError listing every problem."""
    version = _version_problem(doc)
    if version is not None:
        raise SpecError([version])
    raw = copy.deepcopy(doc.value)
    if isinstance(raw.get("retries"), int) and not isinstance(raw["retries"], bool):
        raw["retries"] = {"max_retries": raw["retries"]}
    problems = [p for e in Validator(job_schema()).iter_errors(raw) for p in _explain(e, doc)]
    raw = apply_defaults(job_schema(), raw)
    problems += _semantic(raw, doc)
    if not problems and check_recipe:
        problems += config_problems(raw, doc, _explain, Validator)
    if problems:
        raise SpecError(sorted(set(problems), key=_sort_key))
    return JobSpec.from_dict(_normalise(raw))
