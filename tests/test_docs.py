"""docs/: the generated spec reference stays in sync with the schema; the snippets stay true."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gen_spec_docs.py"
SCHEMA = json.loads((ROOT / "schemas" / "job.schema.json").read_text("utf-8"))
HOOKS = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text("utf-8"))

_spec = importlib.util.spec_from_file_location("gen_spec_docs", SCRIPT)
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)


def test_docs_spec_md_is_up_to_date() -> None:
    current = (ROOT / "docs" / "spec.md").read_text("utf-8")
    assert current == gen.render(SCHEMA), "docs/spec.md is stale: run python scripts/gen_spec_docs.py"


def test_the_script_checks_from_the_command_line() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_check_fails_on_a_stale_file_and_a_run_fixes_it(tmp_path, capsys) -> None:
    out = tmp_path / "spec.md"
    out.write_text((ROOT / "docs" / "spec.md").read_text("utf-8").replace("1 to 8", "1 to 9"))
    assert gen.main(["--check", "--out", str(out)]) == 1
    assert capsys.readouterr().err == (
        f"{out}: out of date with {gen.SCHEMA}; run python scripts/gen_spec_docs.py\n")
    assert gen.main(["--out", str(out)]) == 0
    assert capsys.readouterr().err == f"wrote {out}\n"
    os.utime(out, (1_000_000_000, 1_000_000_000))
    assert gen.main(["--check", "--out", str(out)]) == 0
    assert gen.main(["--out", str(out)]) == 0  # up to date: not rewritten
    assert out.stat().st_mtime == 1_000_000_000
    assert gen.main(["--check", "--out", str(tmp_path / "missing.md")]) == 1


TINY = {
    "title": "tiny spec",
    "description": "A tiny schema.",
    "required": ["name"],
    "properties": {
        "name": {"description": "The name.", "type": "string", "pattern": "^[a-z]+$",
                 "x-pattern-hint": "is not lower-case"},
        "box": {
            "description": "A box.", "type": "object", "default": {},
            "properties": {
                "count": {"description": "How many.", "type": "integer", "minimum": 1,
                          "maximum": 8, "default": 1},
                "wait": {"description": "How long.", "$ref": "#/$defs/duration",
                         "x-min-seconds": 1, "x-max-seconds": 7200, "default": "90s"},
                "mode": {"description": "Which.", "enum": ["no", "yes", None], "default": "no"},
                "tags": {"description": "Tags.", "type": "array", "items": {"type": "string"},
                         "uniqueItems": True, "minItems": 1, "default": ["a"]},
            },
        },
    },
    "$defs": {"duration": {"description": "A duration.", "type": ["integer", "string"],
                           "minimum": 0}},
    "allOf": [{"description": "Two fields agree.", "if": {}, "then": {}}],
}


def test_the_reference_for_a_small_schema() -> None:
    assert gen.render(TINY) == """\
# tiny spec: reference

<!-- Generated from schemas/job.schema.json by scripts/gen_spec_docs.py; do not edit. -->

A tiny schema.

## `name`

The name.

- **Type:** string
- **Required**
- **Limits:** matches `^[a-z]+$` (a value that does not match *is not lower-case*)

## `box`

A box.

- **Type:** mapping
- **Default:** `{}`

### `box.count`

How many.

- **Type:** integer
- **Default:** `1`
- **Limits:** 1 to 8

### `box.wait`

How long.

- **Type:** [duration](#duration)
- **Default:** `90s`
- **Limits:** 1s to 2h

### `box.mode`

Which.

- **Type:** one of `'no'`, `'yes'`, `null`
- **Default:** `'no'`

### `box.tags`

Tags.

- **Type:** list of string
- **Default:** `[a]`
- **Limits:** at least 1 item; no duplicates

## Rules across fields

- Two fields agree.

## Formats

### duration

A duration.

- **Type:** integer or string
- **Limits:** at least 0
"""


def schema_paths(schema: dict, path: str = "") -> list[str]:
    mapping = next((b for b in schema.get("anyOf", []) if b.get("type") == "object"), schema)
    out = []
    for name, sub in mapping.get("properties", {}).items():
        out += [f"{path}{name}", *schema_paths(sub, f"{path}{name}.")]
    return out


@pytest.mark.parametrize("path", schema_paths(SCHEMA))
def test_every_schema_property_has_a_section(path: str) -> None:
    text = (ROOT / "docs" / "spec.md").read_text("utf-8")
    assert re.search(rf"^##+ `{re.escape(path)}`$", text, re.MULTILINE)


def yaml_blocks(markdown: str) -> list:
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", markdown, re.DOTALL)]


@pytest.mark.parametrize("doc", ["docs/ci.md", "docs/in-your-repo.md"])
def test_the_pre_commit_snippet_names_the_declared_hook(doc: str) -> None:
    configs = [b for b in yaml_blocks((ROOT / doc).read_text("utf-8"))
               if isinstance(b, dict) and "repos" in b]
    assert len(configs) == 1
    hooks = [h["id"] for repo in configs[0]["repos"] for h in repo["hooks"]]
    assert hooks == [HOOKS[0]["id"]] == ["launch-check"]


def test_the_ci_workflow_runs_launch_check_on_every_spec() -> None:
    workflows = [b for b in yaml_blocks((ROOT / "docs" / "ci.md").read_text("utf-8"))
                 if isinstance(b, dict) and "jobs" in b]
    assert len(workflows) == 1
    runs = [step.get("run") for step in workflows[0]["jobs"]["check"]["steps"]]
    assert runs[-1] == "launch check jobs/*.yaml"
    assert workflows[0][True] == ["push", "pull_request"]  # YAML 1.1 reads `on:` as True


DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]


def relative_links(markdown: str) -> list[str]:
    """Markdown link targets that are files of this project (no URL, no bare #anchor)."""
    return [link.split("#")[0] for link in re.findall(r"\]\(([^)\s]+)\)", markdown)
            if "://" not in link and not link.startswith("#")]


@pytest.mark.parametrize("doc", DOCS)
def test_every_relative_link_resolves_from_its_own_folder(doc: str) -> None:
    # docs/in-your-repo.md once linked docs/spec.md, which from docs/ is docs/docs/spec.md.
    path = ROOT / doc
    links = relative_links(path.read_text("utf-8"))
    assert [link for link in links if not (path.parent / link).exists()] == []


def test_the_link_check_sees_the_links() -> None:
    assert relative_links((ROOT / "docs" / "in-your-repo.md").read_text("utf-8")) == [
        "../launcher/runtime/recipe/protocol.py", "spec.md", "ci.md"]
    assert relative_links("[a](x.md#part) [b](https://e.com/y.md) [c](#top)") == ["x.md"]


@pytest.mark.parametrize("doc", DOCS)
def test_no_doc_points_at_files_outside_the_project(doc: str) -> None:
    # The developers' notes (shared/*.md) are not part of the product.
    assert re.findall(r"\b(?:MODAL|DESIGN|STYLE)\.md\b", (ROOT / doc).read_text("utf-8")) == []


INIT = ["init", "tiny", "--recipe", "mypkg.recipes:Tiny"]


@pytest.mark.parametrize("doc", ["README.md", "docs/in-your-repo.md"])
def test_the_init_transcript_is_real_output(doc: str, launch, tmp_path, monkeypatch) -> None:
    text = (ROOT / doc).read_text("utf-8")
    shown = text[text.index("launch init tiny --recipe mypkg.recipes:Tiny\n"):].splitlines()[1:6]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "mypkg"\nversion = "1"\ndependencies = []\n')
    monkeypatch.chdir(tmp_path)
    assert launch(*INIT).err.splitlines() == shown


def test_the_missing_dockerfile_example_is_real_output(launch, tmp_path, monkeypatch) -> None:
    text = (ROOT / "docs" / "in-your-repo.md").read_text("utf-8")
    (shown,) = [line for line in text.splitlines() if line.startswith("jobs/tiny.yaml:")]
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "recipes.py").write_text("class Tiny: ...\n")
    monkeypatch.chdir(tmp_path)
    assert launch(*INIT, "--dockerfile", "docker/train.Dockerfile").code == 0
    (tmp_path / "docker" / "train.Dockerfile").unlink()
    result = launch("check", "jobs/tiny.yaml")
    assert result.err.splitlines()[0] == shown.replace("/home/me/myproject", str(tmp_path))


def test_the_readme_sections_explain_excerpt_is_real_output(launch, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    text = (ROOT / "docs" / "in-your-repo.md").read_text("utf-8")
    excerpt = [l for l in text.splitlines() if re.match(r"^  [a-z_.]+ = ", l)]
    assert len(excerpt) == 4
    result = launch("--dry-run", "--explain", "jobs/ppo-multi-gpu.yaml", "--set", "train.steps=500")
    assert set(excerpt) <= set(result.err.splitlines())


# PyPI's `launcher` is an unrelated project, and no launcher release is published anywhere: an
# instruction that names either fails on the user's machine.
WRONG_INSTALL = re.compile(r"pip install ['\"]?launcher\b|(?<![\w/$-])launcher\[|"
                           r"github\.com/launcher/launcher|rev: v0\.1\.0")


@pytest.mark.parametrize("doc", [*DOCS, ".pre-commit-hooks.yaml", "launcher/extras.py", "templates/Dockerfile.cuda.j2"])
def test_no_instruction_installs_pypis_launcher_or_a_release_that_does_not_exist(doc: str) -> None:
    assert WRONG_INSTALL.findall((ROOT / doc).read_text("utf-8")) == []


def test_the_ci_workflow_installs_launcher_from_a_wheel_the_repository_keeps() -> None:
    text = (ROOT / "docs" / "ci.md").read_text("utf-8")
    workflows = [b for b in yaml_blocks(text) if isinstance(b, dict) and "jobs" in b]
    runs = [step.get("run") for step in workflows[0]["jobs"]["check"]["steps"]]
    assert "pip install tools/modal_launcher-*.whl" in runs
    assert "pip wheel --no-deps -w tools ~/src/launcher" in text  # how that wheel is made
    configs = [b for b in yaml_blocks(text) if isinstance(b, dict) and "repos" in b]
    assert configs[0]["repos"][0]["repo"] == "local"  # the installed `launch`, no remote to fetch
    assert configs[0]["repos"][0]["hooks"][0]["language"] == "system"


def test_the_architecture_map_names_every_runtime_package_and_launch_setting() -> None:
    """docs/architecture.md stays a true map: a new package under launcher/runtime/ or a new
    LAUNCH_* variable in the code must appear there too."""
    text = (ROOT / "docs" / "architecture.md").read_text("utf-8")
    runtime = ROOT / "launcher" / "runtime"
    packages = {f"runtime/{p.parent.name}/" for p in runtime.glob("*/__init__.py")}
    sources = [*(ROOT / "launcher").rglob("*.py"), ROOT / "templates" / "modal_app.py.j2"]
    settings = {name for path in sources
                for name in re.findall(r"LAUNCH_[A-Z][A-Z_]*[A-Z]", path.read_text("utf-8"))}
    assert {"runtime/checkpoint/", "runtime/train/"} <= packages and "LAUNCH_VOLUME" in settings
    assert sorted(p for p in packages if f"`{p}`" not in text) == []
    assert sorted(s for s in settings if f"`{s}`" not in text) == []
