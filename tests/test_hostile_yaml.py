"""Hostile YAML: alias bombs, huge files, custom tags, deep nesting and binary are refused.

Each is refused with exit 1 and a location-first message, never a traceback. Those that could
hang, exhaust memory or run code are run in a subprocess, under a generous timeout that is a
hang guard (not a timing assertion).
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import NamedTuple

import pytest

from launcher.spec.yamlpos import MAX_BYTES, MAX_DEPTH, MAX_INT_CHARS, MAX_NODES

ROOT = Path(__file__).resolve().parent.parent
HANG_GUARD_S = 120
SPEC = "version: 1\nname: hostile\ntrain:\n  recipe: launcher.recipes.ppo:PPO\n"
BOMB = f"expands to more than {MAX_NODES} values (an alias bomb?); refusing to load it"
TOO_BIG = f"file is larger than {MAX_BYTES // 1024} KiB; refusing to load it"


class Result(NamedTuple):
    code: int
    out: str
    err: str


def _limit_memory() -> None:
    # 2 GiB of address space: a file read whole, or an expanded bomb, fails here rather than
    # taking the machine's memory.
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def launch_sub(*args: str, cwd: Path) -> Result:
    proc = subprocess.run([sys.executable, "-m", "launcher.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=HANG_GUARD_S, preexec_fn=_limit_memory)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def refused(result: Result) -> list[str]:
    """The problem lines of a `check` that refused one spec, after the checks every refusal
    must pass: exit 1, no traceback, the summary last."""
    assert result.code == 1, result
    assert "Traceback" not in result.err + result.out
    lines = result.err.splitlines()
    assert lines[-1] == "1 spec checked, 1 with problems"
    return lines[:-1]


def bomb_refused(result: Result, source: str, path: str) -> None:
    """One problem: the bomb, at some node under `path` (which node trips the count is the
    builder's business; that it trips, and where in the spec, is ours)."""
    [line] = refused(result)
    pattern = rf"{re.escape(source)}:\d+:\d+: {re.escape(path)}[\w.\[\]]*: document "
    assert re.fullmatch(pattern + re.escape(BOMB), line), line


def write(folder: Path, text: str, name: str = "job.yaml") -> Path:
    path = folder / name
    path.write_text(text, "utf-8")
    return path


# --- alias bombs ---------------------------------------------------------------------------

LAUGHS = "".join(
    [SPEC, "lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"]
    + [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)]
)  # nine levels of nine: 9**9 (387 million) strings once expanded


def test_billion_laughs_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, LAUGHS)
    bomb_refused(launch_sub("check", str(path), cwd=tmp_path), str(path), "$.lol")


def test_a_bomb_of_mappings_and_merge_keys_is_refused(tmp_path: Path) -> None:
    text = SPEC + "m0: &m0 {k: v, j: w}\n" + "".join(
        f"m{i}: &m{i} {{<<: [*m{i - 1}], a: *m{i - 1}, b: *m{i - 1}, c: *m{i - 1}}}\n"
        for i in range(1, 16))
    bomb_refused(launch_sub("check", "job.yaml", cwd=write(tmp_path, text).parent), "job.yaml", "$.m")


def test_a_bomb_inside_train_config_is_refused(tmp_path: Path) -> None:
    body = "".join(f"    b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 10)}]\n" for i in range(1, 7))
    text = SPEC + "  config:\n    b0: &b0 [x, x, x, x, x, x, x, x, x, x]\n" + body
    bomb_refused(launch_sub("check", "job.yaml", cwd=write(tmp_path, text).parent), "job.yaml",
                 "$.train.config.b")


def test_a_bomb_in_a_set_flag_is_refused(tmp_path: Path) -> None:
    write(tmp_path, SPEC)
    bomb = "{a: &a [x, x, x, x, x, x, x, x, x, x], " + ", ".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]" for i in range(6)) + "}"
    arg = f"train.config={bomb}"
    bomb_refused(launch_sub("check", "--set", arg, "job.yaml", cwd=tmp_path), f"--set {arg}", "$.")


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    text = SPEC + "loop: &loop {again: *loop}\n"
    assert refused(launch_sub("check", "job.yaml", cwd=write(tmp_path, text).parent)) == [
        f"job.yaml:5:7: $.loop{'.again' * MAX_DEPTH}: nested deeper than {MAX_DEPTH} levels; "
        "refusing to load it"]


# --- huge files ----------------------------------------------------------------------------

def test_a_file_over_one_mebibyte_is_refused(tmp_path: Path) -> None:
    text = SPEC + "#" * (MAX_BYTES - len(SPEC)) + "\n"  # one byte over
    assert refused(launch_sub("check", "job.yaml", cwd=write(tmp_path, text).parent)) == [
        f"job.yaml: {TOO_BIG}"]


def test_a_file_of_exactly_one_mebibyte_is_read(tmp_path: Path) -> None:
    text = SPEC + "#" * (MAX_BYTES - len(SPEC) - 1) + "\n"
    path = write(tmp_path, text)
    assert path.stat().st_size == MAX_BYTES
    write(tmp_path, "FROM scratch\n", "Dockerfile.cuda")  # check needs the spec's Dockerfile
    result = launch_sub("check", "job.yaml", cwd=tmp_path)
    assert (result.code, result.err) == (0, "1 spec ok\n")


def test_a_huge_sparse_file_is_refused_without_being_read(tmp_path: Path) -> None:
    with (tmp_path / "job.yaml").open("wb") as file:
        file.truncate(8 << 30)  # 8 GiB of zeros, stored as a hole; the child has 2 GiB of memory
    assert refused(launch_sub("check", "job.yaml", cwd=tmp_path)) == [f"job.yaml: {TOO_BIG}"]


def test_an_endless_file_is_refused(tmp_path: Path) -> None:
    assert refused(launch_sub("check", "/dev/zero", cwd=tmp_path)) == [f"/dev/zero: {TOO_BIG}"]


def test_a_huge_base_spec_is_refused_and_named(tmp_path: Path) -> None:
    write(tmp_path, "version: 1\n" + "#" * MAX_BYTES + "\n", "base.yaml")
    write(tmp_path, "extends: base.yaml\n" + SPEC)
    assert refused(launch_sub("check", "job.yaml", cwd=tmp_path)) == [f"base.yaml: {TOO_BIG}"]


@pytest.mark.parametrize("number", [
    "9" * 5000,  # past Python's 4300-digit limit on int(): was an internal error
    "0x" + "f" * 200_000,  # within it for hex, but then unprintable (repr) in every message
    "1" + ":5" * 400_000,  # sexagesimal: evaluating it took minutes
], ids=["decimal", "hex", "sexagesimal"])
def test_an_absurdly_long_integer_is_refused(tmp_path: Path, number: str) -> None:
    write(tmp_path, SPEC + f"  steps: {number}\n")
    assert refused(launch_sub("check", "job.yaml", cwd=tmp_path)) == [
        f"job.yaml:5:10: $.train.steps: integer longer than {MAX_INT_CHARS} characters; "
        "refusing to load it"]


# --- tags ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value,message", [
    ("!!python/object/apply:os.system ['touch PWNED']",
     "5:10: $.train.steps: the tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed "
     "(plain YAML only)"),
    ("!!python/object/apply:os.system {args: ['touch PWNED']}",
     "5:10: $.train.steps: the tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed "
     "(plain YAML only)"),
    ("!!python/name:os.system",
     "5:10: $.train.steps: could not determine a constructor for the tag "
     "'tag:yaml.org,2002:python/name:os.system'"),
    ("!!python/object/new:subprocess.Popen [['touch', 'PWNED']]",
     "5:10: $.train.steps: the tag 'tag:yaml.org,2002:python/object/new:subprocess.Popen' is not "
     "allowed (plain YAML only)"),
    ("!custom 5", "5:10: $.train.steps: could not determine a constructor for the tag '!custom'"),
    ("!custom {a: 1}", "5:10: $.train.steps: the tag '!custom' is not allowed (plain YAML only)"),
    ("!custom [1]", "5:10: $.train.steps: the tag '!custom' is not allowed (plain YAML only)"),
    ("!!set {a, b}", "5:10: $.train.steps: the tag 'tag:yaml.org,2002:set' is not allowed "
                     "(plain YAML only)"),
    ("!!omap [a: 1]", "5:10: $.train.steps: the tag 'tag:yaml.org,2002:omap' is not allowed "
                      "(plain YAML only)"),
    ("!!bool maybe", "5:10: $.train.steps: not a valid bool"),  # was an internal error
    ("!!int ''", "5:10: $.train.steps: not a valid int"),  # was an internal error
    ("!!timestamp soon", "5:10: $.train.steps: not a valid timestamp"),  # was an internal error
    ("2024-13-01", "5:10: $.train.steps: not a valid timestamp: month must be in 1..12"),
], ids=lambda v: v[:30])
def test_tags_are_refused(tmp_path: Path, value: str, message: str) -> None:
    write(tmp_path, SPEC + f"  steps: {value}\n")
    assert refused(launch_sub("check", "job.yaml", cwd=tmp_path)) == [f"job.yaml:{message}"]
    assert not (tmp_path / "PWNED").exists()


def test_a_tag_directive_cannot_smuggle_a_python_tag(tmp_path: Path) -> None:
    text = "%TAG !p! tag:yaml.org,2002:python/object/apply:\n---\n" + SPEC + "  steps: !p!os.system [touch PWNED]\n"
    write(tmp_path, text)
    assert refused(launch_sub("check", "job.yaml", cwd=tmp_path)) == [
        "job.yaml:7:10: $.train.steps: the tag 'tag:yaml.org,2002:python/object/apply:os.system' is "
        "not allowed (plain YAML only)"]
    assert not (tmp_path / "PWNED").exists()


def test_a_tagged_key_is_refused(tmp_path: Path) -> None:
    write(tmp_path, SPEC + "!!python/name:os.system steps: 1\n")
    assert refused(launch_sub("check", "job.yaml", cwd=tmp_path)) == [
        "job.yaml:5:1: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/name:os.system'"]


# --- values that YAML reads as something a spec cannot hold ----------------------------------

FREE_RECIPE = 'class Free:\n    config_schema = {"type": "object"}\n'


@pytest.mark.parametrize("value,kind", [
    ("2024-05-01", "a date"), ("2001-12-14t21:59:43.10-05:00", "a date"),
    ("!!binary aGVsbG8=", "binary data")])
def test_dates_and_binary_in_a_free_config_are_refused(launch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       value: str, kind: str) -> None:
    # These passed `check` and then crashed `--dry-run` (exit 3): JSON has no dates or bytes.
    (tmp_path / "hostile_free_recipe.py").write_text(FREE_RECIPE)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(tmp_path, "version: 1\nname: free\ntrain:\n  recipe: hostile_free_recipe:Free\n"
                           f"  config: {{when: {value}}}\n")
    expected = (f"{path}:5:18: $.train.config.when: YAML reads this as {kind}, which a spec cannot "
                "hold; quote it to make it a string\n")
    assert launch("check", str(path)) == (1, "", expected + "1 spec checked, 1 with problems\n")
    assert launch("--dry-run", str(path)) == (1, "", expected)


# --- deep nesting --------------------------------------------------------------------------

def test_deep_flow_nesting_is_refused(tmp_path: Path) -> None:
    write(tmp_path, SPEC + "  config: " + "[" * 200_000 + "]" * 200_000 + "\n")
    assert refused(launch_sub("check", "job.yaml", cwd=tmp_path)) == [
        "job.yaml: nested too deeply; refusing to load it"]


def test_nesting_past_the_depth_limit_is_refused(tmp_path: Path) -> None:
    text = SPEC + "".join("  " * (i + 1) + "a:\n" for i in range(MAX_DEPTH)) + "  " * (MAX_DEPTH + 1) + "1\n"
    write(tmp_path, text.replace("  a:\n", "  config:\n", 1))
    lines = refused(launch_sub("check", "job.yaml", cwd=tmp_path))
    assert lines == [f"job.yaml:{MAX_DEPTH + 5}:{2 * (MAX_DEPTH + 1) + 1}: $.train.config{'.a' * (MAX_DEPTH - 1)}: "
                     f"nested deeper than {MAX_DEPTH} levels; refusing to load it"]


# --- binary and other encodings --------------------------------------------------------------

@pytest.mark.parametrize("data,message", [
    (b"version: 1\nname: caf\xe9\n", "not UTF-8 text (byte 20)"),  # Latin-1
    ("version: 1\n".encode("utf-16"), "not UTF-8 text (byte 0)"),  # UTF-16 with its BOM
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8 text (byte 0)"),
    (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)), "not UTF-8 text (byte 136)"),
    (b"version: 1\nname: x\xed\xa0\x80\n", "not UTF-8 text (byte 18)"),  # a UTF-8-encoded surrogate
], ids=["latin-1", "utf-16", "png", "elf", "surrogate"])
def test_binary_and_other_encodings_are_refused(launch, tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "job.yaml"
    path.write_bytes(data)
    assert launch("check", str(path)) == (1, "", f"{path}: {message}\n1 spec checked, 1 with problems\n")


@pytest.mark.parametrize("data,message", [
    (b"version: 1\nname: a\x00b\n", "2:8: character #x0000 is not allowed in YAML"),
    (b"version: 1\n\x1b[31mname: x\n", "2:1: character #x001b is not allowed in YAML"),
    # NEL (U+0085) is a YAML 1.1 line break, so "x" starts a line of its own and "train" is a
    # syntax error; an editor sees no break there, so the error is on its line 3, not 4.
    (b"version: 1\nname: \xc2\x85x\n", "3:1: could not find expected ':'"),
], ids=["nul", "escape", "nel"])
def test_control_characters_in_utf8_are_refused_where_they_sit(launch, tmp_path: Path, data: bytes,
                                                               message: str) -> None:
    path = tmp_path / "job.yaml"
    path.write_bytes(data + b"train: {recipe: 'launcher.recipes.ppo:PPO'}\n")
    assert launch("check", str(path)) == (1, "", f"{path}:{message}\n1 spec checked, 1 with problems\n")


# --- merge keys, with the lowest PyYAML that pyproject.toml allows ----------------------------

def _pyyaml_floor() -> str:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["dependencies"]
    [requirement] = [d for d in dependencies if d.lower().startswith("pyyaml")]
    match = re.fullmatch(r"pyyaml>=([0-9.]+)(,.*)?", requirement.replace(" ", ""), re.IGNORECASE)
    assert match, f"a floor written as pyyaml>=X, not {requirement!r}"
    return match[1]


@pytest.fixture(scope="module")
def lowest_pyyaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the lowest PyYAML allowed, installed from the package index."""
    target = tmp_path_factory.mktemp("pyyaml-floor")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--no-deps", "--only-binary", ":all:", "--target", str(target),
                    f"pyyaml=={_pyyaml_floor()}"], check=True, capture_output=True, timeout=HANG_GUARD_S)
    return target


def _flatten_bomb() -> str:
    # Each level merges the level below twice. PyYAML up to 6.0.3 lists 2**40 pairs while it
    # flattens merge keys, before any value is built (105 s and 3.5 GB for 19 KB of such YAML);
    # read pair by pair it is 41 keys.
    inner = "&a0 {k0: 0}"
    for i in range(1, 41):
        inner = f"&a{i} {{<<: [{inner}, *a{i - 1}], k{i}: {i}}}"
    return SPEC + f"m: {inner}\n"


def _merge_bomb() -> str:  # merged values that really do multiply
    return SPEC + "m0: &m0 {k: v, j: w}\n" + "".join(
        f"m{i}: &m{i} {{<<: [*m{i - 1}], a: *m{i - 1}, b: *m{i - 1}, c: *m{i - 1}}}\n" for i in range(1, 16))


def test_merge_keys_are_bounded_with_the_lowest_pyyaml_allowed(tmp_path: Path, lowest_pyyaml: Path) -> None:
    write(tmp_path, _flatten_bomb(), "flatten.yaml")
    write(tmp_path, _merge_bomb(), "merge.yaml")
    code = ("import sys, yaml; from launcher.cli import main; "
            f"assert yaml.__version__ == {_pyyaml_floor()!r}, yaml.__file__; "
            "sys.exit(main(['check', sys.argv[1]]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(lowest_pyyaml), str(ROOT)])}

    def check(name: str) -> Result:
        proc = subprocess.run([sys.executable, "-c", code, name], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=HANG_GUARD_S, preexec_fn=_limit_memory)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    assert refused(check("flatten.yaml")) == ["flatten.yaml:5:1: $: unknown key 'm'"]
    bomb_refused(check("merge.yaml"), "merge.yaml", "$.m")
