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
    text = "a: &a\n  <<: {x: 1, y: 2}\n  x: 3\nb: *a\nc: {<<: [*a, {z: 1}], z: 2}\n"
    assert yamlpos.parse(text, "t.yaml").value == yaml.safe_load(text)


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
