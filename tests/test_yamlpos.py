"""launcher.spec.yamlpos: safe_load's values, plus the line:col of every key and value."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from launcher.errors import Location, SpecError
from launcher.spec import yamlpos
from launcher.spec.yamlpos import Document, json_path

SPEC = """\
version: 1
compute:
  gpu: [H100, A100-80GB]
  timeout: 4h
env: {A: "1"}
"""


def problems(text: str, source: str = "t.yaml") -> list[str]:
    with pytest.raises(SpecError) as caught:
        yamlpos.parse(text, source)
    return [str(p) for p in caught.value.problems]


def test_values_are_safe_load_values() -> None:
    assert yamlpos.parse(SPEC, "t.yaml").value == yaml.safe_load(SPEC)


def test_every_value_and_key_has_its_line_and_column() -> None:
    doc = yamlpos.parse(SPEC, "t.yaml")
    assert doc.values == {
        (): Location("t.yaml", 1, 1),
        ("version",): Location("t.yaml", 1, 10),
        ("compute",): Location("t.yaml", 3, 3),
        ("compute", "gpu"): Location("t.yaml", 3, 8),
        ("compute", "gpu", 0): Location("t.yaml", 3, 9),
        ("compute", "gpu", 1): Location("t.yaml", 3, 15),
        ("compute", "timeout"): Location("t.yaml", 4, 12),
        ("env",): Location("t.yaml", 5, 6),
        ("env", "A"): Location("t.yaml", 5, 10),
    }
    assert doc.keys == {
        ("version",): Location("t.yaml", 1, 1),
        ("compute",): Location("t.yaml", 2, 1),
        ("compute", "gpu"): Location("t.yaml", 3, 3),
        ("compute", "timeout"): Location("t.yaml", 4, 3),
        ("env",): Location("t.yaml", 5, 1),
        ("env", "A"): Location("t.yaml", 5, 7),
    }


def test_where_falls_back_to_the_nearest_recorded_parent() -> None:
    doc = yamlpos.parse(SPEC, "t.yaml")
    assert doc.where(("compute", "gpu_count")) == Location("t.yaml", 3, 3)
    assert doc.where(("compute", "gpu"), key=True) == Location("t.yaml", 3, 3)
    assert doc.where(("nope", "deeper"), key=True) == Location("t.yaml", 1, 1)
    assert Document({}).where(("x",)) == Location("<unknown>")


def test_json_path_spells_keys_and_indexes() -> None:
    assert json_path(()) == "$"
    assert json_path(("compute", "gpu", 1)) == "$.compute.gpu[1]"


def test_merge_keys_and_aliases_resolve_as_safe_load_does() -> None:
    text = "base: &b {cpu: 2, memory: 1GiB}\ncompute:\n  <<: *b\n  cpu: 4\nlist: [*b]\n"
    doc = yamlpos.parse(text, "t.yaml")
    assert doc.value == yaml.safe_load(text)
    assert doc.value["compute"] == {"cpu": 4, "memory": "1GiB"}
    # An overriding key is where it was written; a merged one is where the anchor wrote it.
    assert doc.where(("compute", "cpu")) == Location("t.yaml", 4, 8)
    assert doc.where(("compute", "memory")) == Location("t.yaml", 1, 27)


def test_merge_keys_through_an_alias_visited_twice() -> None:
    text = "a: &a\n  <<: {xx: 1, y: 2}\n  xx: 3\nb: *a\nc: {<<: [*a, {z: 1}], z: 2}\n"
    assert yamlpos.parse(text, "t.yaml").value == yaml.safe_load(text) == {
        "a": {"xx": 3, "y": 2}, "b": {"xx": 3, "y": 2}, "c": {"xx": 3, "y": 2, "z": 2}}


def test_a_merged_mapping_gives_the_values_it_has_whatever_its_keys_are_called() -> None:
    # PyYAML >= 6.0.3 drops a merged pair whose key string is the *same object* as one merged
    # before: CPython shares one-letter strings, so it reads c.x as 1 here (and as 3 had the key
    # been `xx`). The values are those of `a` as it reads: x is 3. So does PyYAML 6.0.
    text = "a: &a\n  <<: {x: 1, y: 2}\n  x: 3\nc: {<<: [*a, {z: 1}], z: 2}\n"
    assert yamlpos.parse(text, "t.yaml").value["c"] == {"x": 3, "y": 2, "z": 2}


def test_a_key_written_twice_beside_a_merge_is_still_a_duplicate() -> None:
    assert problems("a: {<<: {x: 1}, x: 2, x: 3}\n") == ["t.yaml:1:23: $.a.x: duplicate key 'x'"]


def test_standard_tags_are_plain_yaml() -> None:
    assert yamlpos.parse("a: !!str 1\nb: !!int '2'\n", "t.yaml").value == {"a": "1", "b": 2}


def test_yaml_11_booleans_are_what_safe_load_gives() -> None:
    # The reason a spec writes mixed_precision: "no" with quotes.
    assert yamlpos.parse("a: no\nb: 'no'\n", "t.yaml").value == {"a": False, "b": "no"}


def test_duplicate_key_points_at_the_second_key() -> None:
    assert problems("a:\n  b: 1\n  b: 2\n") == ["t.yaml:3:3: $.a.b: duplicate key 'b'"]


def test_duplicate_key_at_the_top_level() -> None:
    assert problems("a: 1\na: 2\n") == ["t.yaml:2:1: $.a: duplicate key 'a'"]


@pytest.mark.parametrize("text, expected", [
    ("a: !!python/object/apply:os.system ['true']\n",
     "t.yaml:1:4: $.a: the tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed (plain YAML only)"),
    ("a: !!python/name:os.system\n",
     "t.yaml:1:4: $.a: could not determine a constructor for the tag 'tag:yaml.org,2002:python/name:os.system'"),
    ("a: !env {x: 1}\n", "t.yaml:1:4: $.a: the tag '!env' is not allowed (plain YAML only)"),
    ("a: !secret x\n", "t.yaml:1:4: $.a: could not determine a constructor for the tag '!secret'"),
])
def test_custom_and_python_tags_are_refused(text: str, expected: str) -> None:
    assert problems(text) == [expected]


@pytest.mark.parametrize("text, expected", [
    ("1: x\n", "t.yaml:1:1: keys must be plain strings, not int"),
    ("a:\n  ? [x]\n  : 1\n", "t.yaml:2:5: $.a: keys must be plain strings, not seq"),
    ("null: 1\n", "t.yaml:1:1: keys must be plain strings, not null"),
])
def test_keys_must_be_strings(text: str, expected: str) -> None:
    assert problems(text) == [expected]


@pytest.mark.parametrize("text, expected", [
    ("a: [1, 2\n", "t.yaml:2:1: expected ',' or ']', but got '<stream end>'"),
    ("a: 'open\n", "t.yaml:2:1: found unexpected end of stream"),
    ("a: 1\n b: 2\n", "t.yaml:2:3: mapping values are not allowed here"),
    ("a: 1\n---\nb: 2\n", "t.yaml:2:1: but found another document"),
])
def test_syntax_errors_name_the_file_line_and_column(text: str, expected: str) -> None:
    assert problems(text) == [expected]


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing but a comment\n"])
def test_an_empty_document_is_an_error(text: str) -> None:
    assert problems(text) == ["t.yaml: the file is empty"]


def test_control_characters_are_refused_with_their_position() -> None:
    assert problems("a: 1\nb: x\x1b\n") == ["t.yaml:2:5: character #x001b is not allowed in YAML"]


def test_alias_expansion_is_bounded() -> None:
    lines = ["a: &a [" + ", ".join(["x"] * 10) + "]"]
    for name, prev in zip("bcdef", "abcde"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    (message,) = problems("\n".join(lines) + "\n")
    assert message.endswith("document expands to more than 100000 values (an alias bomb?); refusing to load it")


def test_nesting_depth_is_bounded() -> None:
    text = "a: " + "[" * 70 + "]" * 70 + "\n"
    (message,) = problems(text)
    assert message.endswith("nested deeper than 64 levels; refusing to load it")


def test_oversized_files_are_refused_before_parsing() -> None:
    text = "a: '" + "x" * (1 << 20) + "'\n"
    assert problems(text) == ["t.yaml: file is larger than 1024 KiB; refusing to load it"]


def test_load_reports_a_missing_file_by_the_name_given(tmp_path) -> None:
    with pytest.raises(SpecError) as caught:
        yamlpos.load(tmp_path / "nope.yaml", "jobs/nope.yaml")
    assert str(caught.value) == "jobs/nope.yaml: no such file"


def test_load_refuses_non_utf8(tmp_path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(SpecError) as caught:
        yamlpos.load(path, "latin1.yaml")
    assert str(caught.value) == "latin1.yaml: not UTF-8 text (byte 9)"


def test_load_reports_an_unreadable_path(tmp_path) -> None:
    with pytest.raises(SpecError) as caught:
        yamlpos.load(tmp_path, "somedir")
    assert str(caught.value) == "somedir: cannot read: Is a directory"


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12),
                    st.floats(allow_nan=False))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=4)),
    max_leaves=20)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=8), values, min_size=1, max_size=5),
       st.sampled_from([None, True]))
def test_any_dumped_mapping_parses_like_safe_load(data: dict, flow: bool | None) -> None:
    text = yaml.safe_dump(data, default_flow_style=flow, allow_unicode=True)
    doc = yamlpos.parse(text, "t.yaml")
    assert doc.value == yaml.safe_load(text)
    assert set(doc.values) >= {(key,) for key in doc.value}  # keys: a dump need not round-trip


# --- positions are where an editor shows them ---------------------------------------------------

@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"], ids=["LS", "PS", "NEL"])
@pytest.mark.parametrize("before", [
    "# a comment{sep}# that goes on\n",  # YAML 1.1 ends the comment there; an editor does not
    'note: "one{sep}two"\n',
    "note: 'one{sep}two'\n",
    "note: \"x\"  # trailing{sep}# comment\n",
], ids=["comment", "double-quoted", "single-quoted", "trailing-comment"])
def test_line_separators_do_not_shift_lines(before: str, separator: str) -> None:
    text = before.format(sep=separator) + "a:\n  b: 1\n  b: 2\n"
    doc_lines = text.count("\n")  # what an editor counts
    assert problems(text) == [f"t.yaml:{doc_lines}:3: $.a.b: duplicate key 'b'"]


def test_values_are_located_by_editor_lines_and_columns() -> None:
    doc = yamlpos.parse('note: "a\u2028b"\nx: [1, 2]\n', "t.yaml")
    assert doc.where(("x", 1)) == Location("t.yaml", 2, 8)


@pytest.mark.parametrize("text, expected", [
    ("a: 1\r\nb: 1\r\nb: 2\r\n", "t.yaml:3:1: $.b: duplicate key 'b'"),  # Windows line ends
    ("a: 1\rb: 1\rb: 2\r", "t.yaml:3:1: $.b: duplicate key 'b'"),  # old Mac line ends
    ("\ufeffb: 1\nb: 2\n", "t.yaml:2:1: $.b: duplicate key 'b'"),
    ("\ufeffa: {b: 1, b: 2}\n", "t.yaml:1:11: $.a.b: duplicate key 'b'"),  # a BOM takes no column
    ('a: "é😀"\nb: 1\nb: [x, "\u2028", y]\nb: 3\n', "t.yaml:3:1: $.b: duplicate key 'b'"),
])
def test_line_ends_and_a_byte_order_mark(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_a_syntax_error_after_a_line_separator_is_on_the_editors_line() -> None:
    assert problems("a: 'x\u2028y'\nb: [1\n") == ["t.yaml:3:1: expected ',' or ']', but got '<stream end>'"]


def test_a_character_refused_after_a_line_separator_is_on_the_editors_line() -> None:
    assert problems("a: 'x\u2028y'\nb: \x07\n") == ["t.yaml:2:4: character #x0007 is not allowed in YAML"]


# --- merge keys: safe_load's values, with the work bounded as they expand ----------------------

@pytest.mark.parametrize("text, expected", [
    ("base: &b {cpu: 2, mem: 1}\nc: {<<: *b}\n", {"cpu": 2, "mem": 1}),
    ("base: &b {cpu: 2, mem: 1}\nc: {<<: *b, cpu: 4}\n", {"cpu": 4, "mem": 1}),
    ("one: &o {kk: 1, aa: 1}\ntwo: &t {kk: 2, bb: 2}\nc: {<<: [*o, *t]}\n", {"kk": 1, "aa": 1, "bb": 2}),
    ("one: &o {kk: 1}\ntwo: &t {<<: *o, kk: 2, bb: 2}\nc: {<<: [*t, {cc: 3}]}\n", {"kk": 2, "bb": 2, "cc": 3}),
    ("one: &o {kk: 1}\nc: {<<: [*o, *o, *o], dd: 4}\n", {"kk": 1, "dd": 4}),
    ("c: {<<: {<<: {<<: {deep: 1}, mid: 2}, top: 3}}\n", {"deep": 1, "mid": 2, "top": 3}),
    ("c: {'<<': 1}\n", {"<<": 1}),  # a quoted << is a plain key
    ("c: {=: 1}\n", {"=": 1}),
])
def test_merge_keys_read_as_the_yaml_merge_spec_says(text: str, expected: dict) -> None:
    # As safe_load reads them in PyYAML 6.0 to 6.0.3; 6.0.4 lets the later of two merged
    # mappings win a key written as two characters or more (the third case), against the spec:
    # "keys in mapping nodes earlier in the sequence override keys in later mapping nodes".
    assert yamlpos.parse(text, "t.yaml").value["c"] == expected


@pytest.mark.parametrize("text, expected", [
    ("a: {<<: 5}\n", "t.yaml:1:9: $.a: expected a mapping or list of mappings for merging, but found scalar"),
    ("a: {<<: [{x: 1}, [y]]}\n", "t.yaml:1:18: $.a: expected a mapping for merging, but found sequence"),
    ("a: {<<: {x: 1}, <<: {y: 2}}\n", "t.yaml:1:17: $.a: duplicate key '<<'"),
    ("a: &a {<<: *a, x: 1}\n", "t.yaml:1:4: $.a: a merge key (<<) merges a mapping into itself"),
    ("a: {<<: {xx: 1, xx: 2}}\n", "t.yaml:1:17: $.a.xx: duplicate key 'xx'"),
    ("a: {<<: !custom {x: 1}}\n", "t.yaml:1:9: $.a: the tag '!custom' is not allowed (plain YAML only)"),
])
def test_merge_key_mistakes_are_refused_where_they_are(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_merging_the_same_mapping_many_times_costs_nothing() -> None:
    # Each level merges the one below twice: PyYAML 6.0 to 6.0.2 list 2**40 pairs while
    # flattening, before any value is built; read pair by pair it is 42 keys.
    inner = "&a0 {k0: 0}"
    for i in range(1, 41):
        inner = f"&a{i} {{<<: [{inner}, *a{i - 1}], k{i}: {i}}}"
    doc = yamlpos.parse(f"m: {inner}\n", "t.yaml")
    assert doc.value["m"] == {f"k{i}": i for i in range(41)}
