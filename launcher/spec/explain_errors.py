"""jsonschema's errors as Problems: location first, one per mistake, with a hint where one helps.

Values are shown as the user wrote them, except a credential's: a value under a credential-like
key is hidden and a token is masked (hf_***), in every message.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jsonschema import ValidationError
from jsonschema.exceptions import best_match

from launcher.errors import Problem
from launcher.spec.credentials import masked, secret_path
from launcher.spec.refs import did_you_mean
from launcher.spec.schema import validator_for
from launcher.spec.yamlpos import Document, JsonPath, json_path


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


def _explained(error: ValidationError, doc: Document, base: JsonPath) -> Iterator[Problem]:
    path: JsonPath = base + tuple(error.absolute_path)
    where = doc.where(path)
    if error.validator in ("anyOf", "oneOf") and error.context:
        for sub in _branch_errors(error):
            yield from explain(sub, doc, base)
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties", {}))
        for key in error.instance:
            if key not in known:
                yield Problem(doc.where(path + (key,), key=True), json_path(path),
                              f"unknown key {key!r}{did_you_mean(key, known)}")
    elif error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        yield Problem(where, json_path(path), f"missing required key {missing!r}")
    elif error.validator == "pattern" and "propertyNames" in error.absolute_schema_path:
        yield Problem(doc.where(path + (error.instance,), key=True), json_path(path),
                      f"key {error.instance!r} {error.schema.get('x-pattern-hint', 'is not allowed')}")
    elif error.validator == "pattern" and "x-pattern-hint" in error.schema:
        yield Problem(where, json_path(path), f"{error.instance!r} {error.schema['x-pattern-hint']}")
    elif error.validator == "not" and "x-not-hint" in error.schema:
        yield Problem(where, json_path(path), f"{error.instance!r} {error.schema['x-not-hint']}")
    elif error.validator == "enum" and isinstance(error.instance, str):
        options = [o for o in error.validator_value if isinstance(o, str)]
        yield Problem(where, json_path(path), error.message + did_you_mean(error.instance, options))
    elif error.validator == "enum" and isinstance(error.instance, bool):
        yield Problem(where, json_path(path), f"{error.message} (YAML reads unquoted yes/no/on/off "
                                              "as true/false: quote it)")
    elif "x-hint" in error.schema:
        yield Problem(where, json_path(path), f"{error.message} ({error.schema['x-hint']})")
    else:
        yield Problem(where, json_path(path), error.message)


def _hide_secrets(problem: Problem, error: ValidationError, base: JsonPath) -> Problem:
    """`problem` with the value it quotes hidden when it is, or holds, a credential. Messages
    start with the value's repr; those that do not (unknown key, missing key) name only keys."""
    quoted = repr(error.instance)
    if not problem.message.startswith(quoted):
        return problem
    shown = repr(masked(error.instance, secret_path(base + tuple(error.absolute_path))))
    return Problem(problem.location, problem.path, shown + problem.message[len(quoted):])


def explain(error: ValidationError, doc: Document, base: JsonPath = ()) -> Iterator[Problem]:
    """The Problems one jsonschema error stands for, located in `doc`; `base` is where in the
    document the validated value sits."""
    for problem in _explained(error, doc, base):
        yield _hide_secrets(problem, error, base)


def schema_problems(schema: dict[str, Any], value: Any, doc: Document, base: JsonPath = ()) -> list[Problem]:
    """Every way `value` (at `base` in `doc`) fails `schema`, located in `doc`."""
    return [p for e in validator_for(schema)(schema).iter_errors(value) for p in explain(e, doc, base)]
