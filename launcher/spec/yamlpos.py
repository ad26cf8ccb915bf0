"""YAML with positions: `yaml.safe_load` semantics, plus where every key and value sits.

The document is composed into PyYAML's node tree (which carries marks), then built into plain
Python values by walking that tree with SafeLoader's own scalar constructor. Walking it
ourselves lets us record positions by JSON path, report duplicate keys, and bound the work an
alias bomb could cause before any value is expanded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from launcher.errors import Location, Problem, SpecError

JsonPath = tuple[str | int, ...]

MAX_BYTES = 1 << 20  # a job spec is a page of YAML; a megabyte is already absurd
MAX_NODES = 100_000  # bounds alias expansion ("billion laughs")
MAX_DEPTH = 64
# Longer integer text is never a setting, and costs: Python refuses to convert more than 4300
# digits, and a sexagesimal int (1:2:3) of a megabyte takes minutes to evaluate.
MAX_INT_CHARS = 1000


@dataclass
class Document:
    """Plain values and, for each JSON path, where its value and its key were written."""

    value: Any
    values: dict[JsonPath, Location] = field(default_factory=dict)
    keys: dict[JsonPath, Location] = field(default_factory=dict)

    def where(self, path: JsonPath, *, key: bool = False) -> Location:
        """The closest recorded location of `path` (its key's, if asked and known)."""
        if key and path in self.keys:
            return self.keys[path]
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, Location("<unknown>"))


def json_path(path: JsonPath) -> str:
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:  # a key with a newline or other control character is quoted: one message, one line
            out += f".{part}" if part.isprintable() else f"[{part!r}]"
    return out


def _loc(source: str, mark: yaml.Mark) -> Location:
    return Location(source, mark.line + 1, mark.column + 1)


def _fail(source: str, mark: yaml.Mark | None, path: JsonPath, message: str) -> SpecError:
    location = _loc(source, mark) if mark is not None else Location(source)
    return SpecError([Problem(location, json_path(path) if path else "", message)])


class _Builder:
    def __init__(self, source: str, loader: yaml.SafeLoader) -> None:
        self.source = source
        self.loader = loader
        self.doc = Document(None)
        self.count = 0
        self.merged: dict[int, int] = {}  # id(mapping node) -> how many of its pairs were merged in

    def build(self, node: yaml.Node, path: JsonPath) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _fail(self.source, node.start_mark, path,
                        f"document expands to more than {MAX_NODES} values "
                        "(an alias bomb?); refusing to load it")
        if len(path) > MAX_DEPTH:
            raise _fail(self.source, node.start_mark, path,
                        f"nested deeper than {MAX_DEPTH} levels; refusing to load it")
        self.doc.values[path] = _loc(self.source, node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            self._check_tag(node, "tag:yaml.org,2002:seq", path)
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _check_tag(self, node: yaml.Node, expected: str, path: JsonPath) -> None:
        if node.tag != expected:
            raise _fail(self.source, node.start_mark, path,
                        f"the tag {node.tag!r} is not allowed (plain YAML only)")

    def _mapping(self, node: yaml.MappingNode, path: JsonPath) -> dict[str, Any]:
        self._check_tag(node, "tag:yaml.org,2002:map", path)
        own = sum(k.tag != "tag:yaml.org,2002:merge" for k, _ in node.value)
        self.loader.flatten_mapping(node)  # YAML merge keys (<<), exactly as safe_load does
        # Merged pairs come first and the mapping's own keys override them, as in safe_load:
        # only its own keys must be unique. Counted at the first visit: aliases revisit nodes.
        merged = self.merged.setdefault(id(node), len(node.value) - own)
        out: dict[str, Any] = {}
        written: set[str] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = self._scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise _fail(self.source, key_node.start_mark, path,
                            f"keys must be plain strings, not {key_node.tag.rsplit(':', 1)[-1]}")
            if index >= merged and key in written:
                raise _fail(self.source, key_node.start_mark, path + (key,),
                            f"duplicate key {key!r}")
            if index >= merged:
                written.add(key)
            self.doc.keys[path + (key,)] = _loc(self.source, key_node.start_mark)
            out[key] = self.build(value_node, path + (key,))
        return out

    def _scalar(self, node: yaml.Node, path: JsonPath) -> Any:
        kind = node.tag.rsplit(":", 1)[-1]
        if kind == "int" and len(node.value) > MAX_INT_CHARS:
            raise _fail(self.source, node.start_mark, path,
                        f"integer longer than {MAX_INT_CHARS} characters; refusing to load it")
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            mark = exc.problem_mark or node.start_mark
            raise _fail(self.source, mark, path, _first_line(exc.problem or str(exc))) from None
        except (ValueError, LookupError, AttributeError) as exc:
            # PyYAML's constructors fail this way on a date that does not exist (2024-13-01) or
            # on text under an explicit standard tag (`!!bool maybe`, `!!int ''`).
            detail = f": {exc}" if isinstance(exc, ValueError) else ""
            raise _fail(self.source, node.start_mark, path, f"not a valid {kind}{detail}") from None


def _line_col(text: str, index: int) -> tuple[int, int]:
    before = text[:index]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "invalid YAML"


_TOO_BIG = f"file is larger than {MAX_BYTES // 1024} KiB; refusing to load it"


def parse(text: str, source: str) -> Document:
    """Parse one YAML document from `text`; `source` names it in every message."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise SpecError([Problem(Location(source), "", _TOO_BIG)])
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # unprintable characters are refused up front
        line, col = _line_col(text, exc.position)
        raise SpecError([Problem(Location(source, line, col), "",
                                 f"character #x{exc.character:04x} is not allowed in YAML")]) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise _fail(source, None, (), "the file is empty")
        builder = _Builder(source, loader)
        builder.doc.value = builder.build(node, ())
        return builder.doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise _fail(source, mark, (), _first_line(exc.problem or exc.context or "")) from None
    except yaml.reader.ReaderError as exc:
        line, col = _line_col(text, exc.position)
        raise SpecError([Problem(Location(source, line, col), "",
                                 f"character #x{exc.character:04x} is not allowed in YAML")]) from None
    except RecursionError:
        raise _fail(source, None, (), "nested too deeply; refusing to load it") from None
    finally:
        loader.dispose()


def load(path: Path, source: str | None = None) -> Document:
    """Read and parse a YAML file; a missing or unreadable file is a user error."""
    name = source or str(path)
    try:
        with path.open("rb") as file:  # bounded: a huge file (or /dev/zero) is never read whole
            raw = file.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise SpecError([Problem(Location(name), "", "no such file")]) from None
    except OSError as exc:
        raise SpecError([Problem(Location(name), "", f"cannot read: {exc.strerror}")]) from None
    if len(raw) > MAX_BYTES:
        raise SpecError([Problem(Location(name), "", _TOO_BIG)])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([Problem(Location(name), "",
                                 f"not UTF-8 text (byte {exc.start})")]) from None
    return parse(text, name)
