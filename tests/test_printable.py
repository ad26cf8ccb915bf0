"""launcher.errors.printable: what launcher prints cannot hide, reorder or split text.

Control and bidirectional characters (Trojan Source: U+202A..U+202E, U+2066..U+2069) and line
separators in a value, a key or a file name are escaped wherever they are printed: in error
messages, the plan, --explain and diff; tokens are masked there too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from launcher.errors import printable

UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
FREE_RECIPE = 'class Free:\n    config_schema = {"type": "object"}\n'


@pytest.mark.parametrize("text, shown", [
    ("plain text, é and 😀 stay", "plain text, é and 😀 stay"),
    ("rtl\u202eoverride", "rtl\\u202eoverride"),
    ("isolate\u2066x\u2069", "isolate\\u2066x\\u2069"),
    ("marks\u200e\u200f\u061c", "marks\\u200e\\u200f\\u061c"),
    ("tab\tnul\x00esc\x1bdel\x7fnel\x85", "tab\\tnul\\x00esc\\x1bdel\\x7fnel\\x85"),
    ("line\u2028para\u2029", "line\\u2028para\\u2029"),
    ("token hf_" + "a1B2c3D4e5F6g7H8i9J0k1L2", "token hf_***"),
])
def test_printable(text: str, shown: str) -> None:
    assert printable(text) == shown


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "printable_free_recipe.py").write_text(FREE_RECIPE)
    (tmp_path / "Dockerfile.cuda").write_text("FROM scratch\n")  # the image the spec names
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def spec(note: str) -> str:
    return ("version: 1\nname: printable\nimage: {code: local}\ntrain:\n  recipe: printable_free_recipe:Free\n"
            f'  config: {{"key\\u2066": "{note}"}}\n')


HOSTILE = "a\\u202eb\\u2028c\\u0007d\\u0085e"  # YAML escapes: the file itself is plain ASCII


def test_the_plan_and_explain_escape_values_keys_and_file_names(launch, folder: Path) -> None:
    name = "job\u202e.yaml"
    (folder / name).write_text(spec(HOSTILE), "utf-8")
    result = launch("--dry-run", "--explain", name)
    assert result.code == 0, result.err
    assert UNSAFE.findall(result.out + result.err) == []
    assert "plan: printable from job\\u202e.yaml (spec sha256" in result.err
    # YAML's own escapes where it has them (\\L, \\a, \\N); \\u202e means the same in YAML.
    assert '  train.config.key\\u2066 = "a\\u202eb\\Lc\\ad\\Ne"' in result.err
    assert "job\\u202e.yaml:6" in result.err  # the origin column names the file escaped


def test_diff_escapes_what_it_prints(launch, folder: Path) -> None:
    (folder / "old.yaml").write_text(spec("plain"), "utf-8")
    (folder / "new\u2067.yaml").write_text(spec(HOSTILE), "utf-8")
    result = launch("diff", "old.yaml", "new\u2067.yaml")
    assert result.code == 0, result.err
    assert UNSAFE.findall(result.out + result.err) == []
    assert "+++ new\\u2067.yaml (resolved spec)" in result.out
    assert '+train.config.key\\u2066 = "a\\u202eb\\Lc\\ad\\Ne"' in result.out


def test_error_messages_escape_file_names_and_values(launch, folder: Path) -> None:
    name = "bad\u202e.yaml"
    (folder / name).write_text(spec(HOSTILE).replace("name: printable", 'name: "x\\u202ey"'), "utf-8")
    result = launch("check", name)
    assert UNSAFE.findall(result.out + result.err) == []
    assert result == (1, "", "bad\\u202e.yaml:2:7: $.name: 'x\\u202ey' is not a valid app name: use letters, "
                             "digits, '.', '_' and '-' (at most 64, starting with a letter or digit)\n"
                             "1 spec checked, 1 with problems\n")
