"""Generate docs/spec.md, the spec reference, from schemas/job.schema.json.

Run: python scripts/gen_spec_docs.py          (rewrite docs/spec.md)
     python scripts/gen_spec_docs.py --check  (exit 1 if docs/spec.md is stale; for CI and tests)

Everything comes from the schema: descriptions, types, defaults and limits (ranges, enums,
patterns with their hints, duration ranges). The output is a pure function of the schema.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from launcher.render import yaml_value
from launcher.spec.units import human_seconds

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schemas" / "job.schema.json"
DOCS = ROOT / "docs" / "spec.md"
Schema = dict[str, Any]


def code(value: Any) -> str:
    return f"`{yaml_value(value)}`"


def ref_name(schema: Schema) -> str | None:
    ref = schema.get("$ref", "")
    return ref.removeprefix("#/$defs/") if ref.startswith("#/$defs/") else None


def kind(schema: Schema) -> str:
    """What a value may be, in words: `integer`, `one of ...`, `list of [duration](#duration)`."""
    if (name := ref_name(schema)) is not None:
        return f"[{name}](#{name})"
    if "const" in schema:
        return f"the constant {code(schema['const'])}"
    if "enum" in schema:
        return "one of " + ", ".join(code(v) for v in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(kind(branch) for branch in schema["anyOf"])
    types = schema.get("type", "any")
    return " or ".join(_type_word(t, schema) for t in ([types] if isinstance(types, str) else types))


def _type_word(name: str, schema: Schema) -> str:
    if name == "array":
        return f"list of {kind(schema['items'])}" if "items" in schema else "list"
    if name == "object":
        return "mapping"
    return name


def _range(low: str | None, high: str | None) -> str | None:
    if low is not None and high is not None:
        return f"{low} to {high}"
    if low is not None:
        return f"at least {low}"
    return None if high is None else f"at most {high}"


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def own_limits(schema: Schema) -> Iterator[str]:
    """The limits a schema states itself (not those of a $ref'd format)."""
    low, high = schema.get("minimum"), schema.get("maximum")
    span = _range(None if low is None else _number(low), None if high is None else _number(high))
    if "exclusiveMinimum" in schema:
        span = f"greater than {_number(schema['exclusiveMinimum'])}" + (
            f", at most {_number(high)}" if high is not None else "")
    if span and schema.get("type") not in ("array", ["array"]):
        yield span
    low_s, high_s = schema.get("x-min-seconds"), schema.get("x-max-seconds")
    seconds = _range(None if low_s is None else human_seconds(low_s),
                     None if high_s is None else human_seconds(high_s))
    if seconds:
        yield seconds
    if "minItems" in schema:
        yield f"at least {schema['minItems']} item{'s' if schema['minItems'] != 1 else ''}"
    if schema.get("uniqueItems"):
        yield "no duplicates"
    if schema.get("minLength") == 1:
        yield "not empty"
    if "pattern" in schema:
        hint = schema.get("x-pattern-hint")
        yield f"matches `{schema['pattern']}`" + (f" (a value that does not match *{hint}*)" if hint else "")
    names = schema.get("propertyNames", {})
    if "pattern" in names:
        yield f"names match `{names['pattern']}`"


def limits(schema: Schema) -> list[str]:
    """Limits of the schema, its anyOf branches and its items, without repeats, in order."""
    found = list(own_limits(schema))
    for sub in [*schema.get("anyOf", []), *([schema["items"]] if "items" in schema else [])]:
        found += limits(sub)
    return list(dict.fromkeys(found))


def children(schema: Schema, path: str) -> Iterator[tuple[str, Schema, bool]]:
    """(dotted path, schema, required) of the fields inside a mapping (or its mapping branch)."""
    mapping = next((b for b in schema.get("anyOf", []) if b.get("type") == "object"), schema)
    required = set(mapping.get("required", []))
    for name, sub in mapping.get("properties", {}).items():
        yield f"{path}.{name}" if path else name, sub, name in required
    if isinstance(mapping.get("additionalProperties"), dict):
        yield f"{path}.<NAME>", mapping["additionalProperties"], True


def entry(path: str, schema: Schema, required: bool) -> list[str]:
    level = "##" if "." not in path else "###"
    lines = [f"{level} `{path}`", "", schema["description"], "", f"- **Type:** {kind(schema)}"]
    if required and "<NAME>" not in path:
        lines.append("- **Required**")
    if "default" in schema:
        lines.append(f"- **Default:** {code(schema['default'])}")
    if "x-inherit" in schema:  # a stage's setting: the job's unless the stage says otherwise
        lines.append(f"- **Default:** the job's `{schema['x-inherit']}`")
    lines += [f"- **Limits:** {'; '.join(found)}" for found in [limits(schema)] if found]
    return [*lines, ""]


def fields(schema: Schema, path: str = "") -> Iterator[list[str]]:
    for sub_path, sub, required in children(schema, path):
        yield entry(sub_path, sub, required)
        yield from fields(sub, sub_path)


def formats(schema: Schema) -> list[str]:
    lines = ["## Formats", ""]
    for name, sub in schema.get("$defs", {}).items():
        lines += [f"### {name}", "", sub["description"], "", f"- **Type:** {kind(sub)}"]
        lines += [f"- **Limits:** {'; '.join(found)}" for found in [limits(sub)] if found]
        lines.append("")
    return lines


def rules(schema: Schema) -> list[str]:
    found = [f"- {rule['description']}" for rule in schema.get("allOf", []) if "description" in rule]
    return ["## Rules across fields", "", *found, ""] if found else []


def render(schema: Schema) -> str:
    lines = [
        f"# {schema['title']}: reference",
        "",
        "<!-- Generated from schemas/job.schema.json by scripts/gen_spec_docs.py; do not edit. -->",
        "",
        schema["description"],
        "",
    ]
    for block in fields(schema):
        lines += block
    lines += rules(schema) + formats(schema)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--schema", type=Path, default=SCHEMA)
    parser.add_argument("--out", type=Path, default=DOCS)
    args = parser.parse_args(argv)
    text = render(json.loads(args.schema.read_text("utf-8")))
    current = args.out.read_text("utf-8") if args.out.is_file() else None
    if args.check:
        if current == text:
            return 0
        print(f"{args.out}: out of date with {args.schema}; run python scripts/gen_spec_docs.py",
              file=sys.stderr)
        return 1
    if current != text:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, "utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
