"""YAML with positions: `yaml.safe_load` semantics, plus where every key and value sits.

The document is composed into PyYAML's node tree (which carries marks), then built into plain
Python values by walking that tree with SafeLoader's own scalar constructor. Walking it
ourselves lets us record positions by JSON path, report duplicate keys, and bound the work an
alias bomb could cause before any value is expanded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from launcher.errors import Location, Problem, SpecError
from launcher.spec.textpos import TextPositions

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


def walk(value: Any, path: JsonPath = ()) -> Iterator[tuple[JsonPath, Any]]:
    """(path, value) of `value` and of everything inside it, depth first."""
    yield path, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from walk(item, path + (key,))


def json_path(path: JsonPath) -> str:
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:  # a key with a newline or other control character is quoted: one message, one line
            out += f".{part}" if part.isprintable() else f"[{part!r}]"
    return out


def _fail(where: Location, path: JsonPath, message: str) -> SpecError:
    return SpecError([Problem(where, json_path(path) if path else "", message)])


MAP, SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
MERGE, VALUE = "tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"
BOOL_TAG = "tag:yaml.org,2002:bool"
Pair = tuple[str, yaml.Node, yaml.Node]  # key, key node, value node


class _Builder:
    def __init__(self, positions: TextPositions, loader: yaml.SafeLoader) -> None:
        self.positions = positions
        self.loader = loader
        self.doc = Document(None)
        self.count = 0
        # id(mapping node) -> its pairs with merge keys (<<) resolved; None while being resolved
        self.pairs: dict[int, list[Pair] | None] = {}

    def where(self, node: yaml.Node) -> Location:
        return self.positions.at(node.start_mark.index)

    def spend(self, amount: int, node: yaml.Node, path: JsonPath) -> None:
        """Count `amount` more values, built or merged; past MAX_NODES the document is a bomb."""
        self.count += amount
        if self.count > MAX_NODES:
            raise _fail(self.where(node), path, f"document expands to more than {MAX_NODES} values "
                                                "(an alias bomb?); refusing to load it")

    def build(self, node: yaml.Node, path: JsonPath) -> Any:
        self.spend(1, node, path)
        if len(path) > MAX_DEPTH:
            raise _fail(self.where(node), path, f"nested deeper than {MAX_DEPTH} levels; refusing to load it")
        self.doc.values[path] = self.where(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            self._check_tag(node, SEQ, path)
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _check_tag(self, node: yaml.Node, expected: str, path: JsonPath) -> None:
        if node.tag != expected:
            raise _fail(self.where(node), path, f"the tag {node.tag!r} is not allowed (plain YAML only)")

    def _mapping(self, node: yaml.MappingNode, path: JsonPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, key_node, value_node in self._pairs(node, path):
            self.doc.keys[path + (key,)] = self.where(key_node)
            out[key] = self.build(value_node, path + (key,))
        return out

    def _pairs(self, node: yaml.MappingNode, path: JsonPath) -> list[Pair]:
        """The mapping's pairs as safe_load reads them: merged ones first, the first source that
        has a key giving it, then the mapping's own keys over them. Resolved once per node and
        counted as they expand, so merge keys cannot multiply work past MAX_NODES."""
        if id(node) in self.pairs:
            known = self.pairs[id(node)]
            if known is None:
                raise _fail(self.where(node), path, "a merge key (<<) merges a mapping into itself")
            return known
        self._check_tag(node, MAP, path)
        self.pairs[id(node)] = None
        merged: dict[str, Pair] = {}
        own: dict[str, Pair] = {}
        merges = [(key, value) for key, value in node.value if key.tag == MERGE]
        if len(merges) > 1:  # which one wins differs between PyYAML versions: refuse it
            raise _fail(self.where(merges[1][0]), path, "duplicate key '<<'")
        for source in self._merge_sources(merges[0][1], path) if merges else []:
            pairs = self._pairs(source, path)
            self.spend(len(pairs), source, path)
            for pair in pairs:
                merged.setdefault(pair[0], pair)
        for key_node, value_node in node.value:
            if key_node.tag == MERGE:
                continue
            key = self._key(key_node, path)
            if key in own:
                raise _fail(self.where(key_node), path + (key,), f"duplicate key {key!r}")
            own[key] = (key, key_node, value_node)
        resolved = list({**merged, **own}.values())
        self.pairs[id(node)] = resolved
        return resolved

    def _merge_sources(self, value: yaml.Node, path: JsonPath) -> list[yaml.MappingNode]:
        if isinstance(value, yaml.MappingNode):
            return [value]
        if not isinstance(value, yaml.SequenceNode):
            raise _fail(self.where(value), path, "expected a mapping or list of mappings for "
                                                 f"merging, but found {value.id}")
        self._check_tag(value, SEQ, path)
        for item in value.value:
            if not isinstance(item, yaml.MappingNode):
                raise _fail(self.where(item), path, f"expected a mapping for merging, but found {item.id}")
        return value.value

    def _key(self, node: yaml.Node, path: JsonPath) -> str:
        if node.tag == VALUE:  # a key `=`: YAML 1.1's value key, read as a string by safe_load
            node.tag = "tag:yaml.org,2002:str"
        if node.tag == BOOL_TAG and isinstance(node, yaml.ScalarNode) and not node.style:
            # `on:` (notify.on) is a boolean key to YAML 1.1: a key is a name, read as written.
            node.tag = "tag:yaml.org,2002:str"
        key = self._scalar(node, path) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(key, str):
            raise _fail(self.where(node), path, f"keys must be plain strings, not {node.tag.rsplit(':', 1)[-1]}")
        return key

    def _scalar(self, node: yaml.Node, path: JsonPath) -> Any:
        kind = node.tag.rsplit(":", 1)[-1]
        if kind == "int" and len(node.value) > MAX_INT_CHARS:
            raise _fail(self.where(node), path, f"integer longer than {MAX_INT_CHARS} characters; "
                                                "refusing to load it")
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            mark = exc.problem_mark or node.start_mark
            raise _fail(self.positions.at(mark.index), path,
                        _first_line(exc.problem or str(exc))) from None
        except OverflowError:  # a sexagesimal float (1:2:...:0.5) past the range of a float
            raise _fail(self.where(node), path, f"not a valid {kind}: out of range") from None
        except (ValueError, LookupError, AttributeError) as exc:
            # PyYAML's constructors fail this way on a date that does not exist (2024-13-01) or
            # on text under an explicit standard tag (`!!bool maybe`, `!!int ''`). Only a date's
            # detail is shown: int() and float() quote the text, which may be a credential.
            detail = f": {exc}" if isinstance(exc, ValueError) and kind == "timestamp" else ""
            raise _fail(self.where(node), path, f"not a valid {kind}{detail}") from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "invalid YAML"


_TOO_BIG = f"file is larger than {MAX_BYTES // 1024} KiB; refusing to load it"


def parse(text: str, source: str) -> Document:
    """Parse one YAML document from `text`; `source` names it in every message."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise SpecError([Problem(Location(source), "", _TOO_BIG)])
    positions = TextPositions(source, text)
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # unprintable characters are refused up front
        raise _unprintable(positions, exc) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise _fail(Location(source), (), "the file is empty")
        builder = _Builder(positions, loader)
        builder.doc.value = builder.build(node, ())
        return builder.doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = positions.at(mark.index) if mark is not None else Location(source)
        raise _fail(where, (), _first_line(exc.problem or exc.context or "")) from None
    except yaml.reader.ReaderError as exc:
        raise _unprintable(positions, exc) from None
    except RecursionError:
        raise _fail(Location(source), (), "nested too deeply; refusing to load it") from None
    finally:
        loader.dispose()


def _unprintable(positions: TextPositions, exc: yaml.reader.ReaderError) -> SpecError:
    return _fail(positions.at(exc.position), (), f"character #x{exc.character:04x} is not allowed in YAML")


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
