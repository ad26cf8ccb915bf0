"""Injection: free text reaches the generated app only as string constants; names are refused.

A free-text value (env values, train.config keys and values, the spec's file name, the git URL
and commit that come from git) may hold anything. The app rendered with such payloads must have
exactly the AST of the app rendered with benign placeholders, string constants aside, and each
payload must be one of its string constants. A field that becomes a name or an identifier in the
app or on Modal refuses every payload, with a message at that field.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from launcher.load import load_spec
from launcher import __version__
from launcher.render import CodeSource, comment, render

PAYLOADS = {
    "single quote": "'",
    "double quote": '"',
    "triple single": "'''",
    "triple double": '"""',
    "backslash": "\\",
    "trailing backslash": "x\\",
    "newline": "a\nb",
    "newline at the end": "\n",
    "carriage return": "a\r\nb",
    "jinja expression": "{{ 7 * 7 }}",
    "jinja statement": "{% if true %}x{% endif %}",
    "jinja comment": "{# c #}",
    "python call": "__import__('os').system('x')",
    "single-quote breakout": "'); __import__('os').system('x'); ('",
    "double-quote breakout": '"); __import__("os").system("x"); ("',
    "docstring breakout": '"""; __import__("os").system("x"); """',
    "comment breakout": "# comment\n__import__('os').system('x')",
    "line separator": "a\u2028b",
    "paragraph separator": "a\u2029b",
    "next line": "a\x85b",
    "nul": "a\x00b",
}
PAYLOADS["all at once"] = "".join(PAYLOADS.values())

FREE_RECIPE = 'class Free:\n    config_schema = {"type": "object"}\n'


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with a user recipe whose config takes anything, importable while the test runs."""
    (tmp_path / "injection_free_recipe.py").write_text(FREE_RECIPE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def free_text_spec(text: str) -> dict[str, Any]:
    """A valid spec carrying `text` in every free-text place: env values, config keys and values.
    Dicts have one key each, so the sorted literal has one shape whatever the text."""
    return {
        "version": 1,
        "name": "injection",
        "image": {"code": "local"},
        "env": {"PLAIN": text, "OTHER": f"prefix {text} suffix"},
        "train": {"recipe": "injection_free_recipe:Free",
                  "config": {text: {text: [text, {text: text}, [f"<{text}>"]]}}},
    }


def write(folder: Path, spec: dict[str, Any], name: str = "job.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False), "utf-8")  # escapes what YAML must
    return path


def shape(app: str) -> str:
    """The app's AST with every string constant replaced by the same one."""
    tree = ast.parse(app)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = "S"
    return ast.dump(tree)


def strings(app: str) -> set[str]:
    return {n.value for n in ast.walk(ast.parse(app)) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def assert_only_constants(app: str, benign: str, payload: str) -> None:
    compile(app, "app.py", "exec")
    assert shape(app) == shape(benign)
    assert payload in strings(app)
    # Every unprintable character is escaped: no raw line separator that an editor, a reviewer's
    # diff or a tokenizer could read as the end of a line or a comment.
    assert [c for c in app if not c.isprintable() and c != "\n"] == []


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_env_and_config_text_are_only_string_constants(launch, folder: Path, payload: str) -> None:
    benign = launch("--dry-run", str(write(folder, free_text_spec("benign"), "benign.yaml")))
    result = launch("--dry-run", str(write(folder, free_text_spec(payload))))
    assert (benign.code, result.code) == (0, 0), result.err
    assert_only_constants(result.out, benign.out, payload)
    assert {payload, f"prefix {payload} suffix", f"<{payload}>"} <= strings(result.out)
    spec = load_spec(folder / "job.yaml").spec  # the text went in unchanged, keys included
    assert spec.env == {"PLAIN": payload, "OTHER": f"prefix {payload} suffix"}
    assert spec.train.config == {payload: {payload: [payload, {payload: payload}, [f"<{payload}>"]]}}


FILE_NAMES = {k: v for k, v in PAYLOADS.items() if "\x00" not in v and "/" not in v}  # a file name's limits


@pytest.mark.parametrize("payload", FILE_NAMES.values(), ids=FILE_NAMES.keys())
def test_the_spec_file_name_stays_in_its_comments(launch, folder: Path, payload: str) -> None:
    spec = free_text_spec("text")
    benign = launch("--dry-run", str(write(folder, spec, "benign.yaml")))
    path = write(folder, spec, f"job{payload}.yaml")
    result = launch("--dry-run", str(path))
    assert (benign.code, result.code) == (0, 0), result.err
    # The name is in comments only: not one string constant differs from the benign app's.
    assert shape(result.out) == shape(benign.out) and strings(result.out) == strings(benign.out)
    assert [c for c in result.out if not c.isprintable() and c != "\n"] == []
    head = result.out.splitlines()[:4]
    assert head[0] == f"# Generated by launcher {__version__} from {comment(str(path))}"
    assert head[1].startswith("# spec sha256: ") and head[2].startswith("# Do not edit: ")
    assert head[3].startswith('"""Modal app for the training job injection:')


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_the_source_name_given_to_render_stays_in_its_comments(folder: Path, payload: str) -> None:
    # render() takes any string as the source name, NUL and '/' included (was: ValueError on NUL).
    spec = load_spec(write(folder, free_text_spec("text"))).spec
    benign = render(spec, "benign.yaml", CodeSource("local"))
    app = render(spec, payload, CodeSource("local"))
    assert shape(app) == shape(benign) and strings(app) == strings(benign)
    assert [c for c in app if not c.isprintable() and c != "\n"] == []
    assert app.count("\n") == benign.count("\n")  # the name added no line


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_git_url_and_commit_from_git_are_only_string_constants(folder: Path, payload: str) -> None:
    # They come from `git remote get-url origin` and HEAD when the spec leaves them out, so no
    # schema has seen them.
    spec = load_spec(write(folder, free_text_spec("text"))).spec
    benign = render(spec, "job.yaml", CodeSource("git", "https://example.com/r.git", "0" * 40))
    app = render(spec, "job.yaml", CodeSource("git", f"https://example.com/{payload}", payload))
    assert_only_constants(app, benign, payload)
    assert f"https://example.com/{payload}" in strings(app)


# --- fields that become names: every payload is refused -------------------------------------

def _set(spec: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    *parents, last = dotted.split(".")
    node = spec
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return spec


# (where the text goes, a valid value to append the payload to, the JSON path the message names)
NAME_FIELDS = {
    "name": ("name", "ok", "$.name"),
    "checkpoint.volume": ("checkpoint.volume", "vol", "$.checkpoint.volume"),
    "secrets": ("secrets", "wandb", "$.secrets[0]"),
    "train.recipe": ("train.recipe", "launcher.recipes.ppo:PPO", "$.train.recipe"),
    "env keys": ("env", "MY_VAR", "$.env"),
    "image.dockerfile": ("image.dockerfile", "Dockerfile.cuda", "$.image.dockerfile"),
    "image.git.url": ("image.git.url", "https://example.com/r.git", "$.image.git.url"),
    "image.git.ref": ("image.git.ref", "main", "$.image.git.ref"),
    "checkpoint.mount": ("checkpoint.mount", "/checkpoints", "$.checkpoint.mount"),
    "compute.region": ("compute.region", "us-east", "$.compute.region"),
}


def _spec_with(field: str, text: str) -> dict[str, Any]:
    spec = {"version": 1, "name": "ok", "train": {"recipe": "launcher.recipes.ppo:PPO"}}
    if field == "secrets":
        return _set(spec, field, [text])
    if field == "env":
        return _set(spec, field, {text: "value"})
    return _set(spec, field, text)


@pytest.mark.parametrize("field,valid,json_path", NAME_FIELDS.values(), ids=NAME_FIELDS.keys())
def test_name_fields_refuse_every_payload(launch, tmp_path: Path, field: str, valid: str,
                                         json_path: str) -> None:
    path = tmp_path / "job.yaml"
    accepted = launch("check", str(write(tmp_path, _spec_with(field, valid))))
    assert accepted.code == 0, accepted.err  # so a refusal below is the payload's doing
    location = re.compile(rf"{re.escape(str(path))}:\d+:\d+: {re.escape(json_path)}: \S")
    escaped = []
    for name, payload in PAYLOADS.items():
        for text in (payload, valid + payload):
            result = launch("check", str(write(tmp_path, _spec_with(field, text))))
            lines = result.err.splitlines()
            if not (result.code == 1 and lines[-1] == "1 spec checked, 1 with problems"
                    and any(location.match(line) for line in lines[:-1])):
                escaped.append((name, text, result))
    assert escaped == []
