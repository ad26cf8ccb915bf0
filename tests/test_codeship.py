"""What `image.code: local` ships, read from the generated app itself: the image's own mounts
(Modal's objects, walked offline) list every file it would upload.

The last test lays those files out as the container would see them and runs stage 1 from there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
from modal._utils.async_utils import synchronizer

from launcher import codeship
from launcher.codesource import CodeSource
from launcher.load import load_spec
from launcher.render import render

ROOT = Path(__file__).resolve().parent.parent
SPEC = load_spec(ROOT / "tests" / "golden" / "code-local" / "spec.yaml").spec


def import_app(app: str, folder: Path, repo: Path, monkeypatch) -> object:
    path = folder / "shipped_app.py"
    path.write_text(app, "utf-8")
    monkeypatch.setenv("LAUNCH_REPO_ROOT", str(repo))
    found = importlib.util.spec_from_file_location(f"shipped_{id(path)}", path)
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module


def mounts(image: object) -> Iterator[object]:
    """The Modal mounts an image was given, in the order they were added."""
    def walk(obj: object) -> Iterator[object]:
        for dep in obj._deps() if getattr(obj, "_deps", None) else []:
            yield from walk(dep)
            if type(dep).__name__ == "_Mount":
                yield dep
    return walk(synchronizer._translate_in(image))


def shipped(module: object) -> dict[str, Path]:
    """Every file the app's image would upload: remote path -> local file."""
    return {str(remote): Path(local) for mount in mounts(module.image) for entry in mount.entries
            for local, remote in entry.get_files_to_upload()}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, "utf-8")


USER_FILES = {
    "mypkg/__init__.py": "",
    "mypkg/recipes.py": "class Tiny: ...\n",
    "mypkg/recipes.Tiny.schema.json": "{}\n",
    "mypkg/vocab.txt": "a\nb\n",
    "mypkg/config.yaml": "x: 1\n",
    "configs/base.yaml": "y: 2\n",
    "jobs/tiny.yaml": "version: 1\n",
    "Dockerfile.cuda": "FROM python:3.11\n",
    "notes/untracked but not ignored.md": "kept\n",
    "we[i]rd *name?.txt": "kept\n",
    # Left out: by .gitignore, by CODE_IGNORE, and virtualenvs by any name.
    ".gitignore": "data/\n*.log\n",
    "data/big.bin": "x",
    "train.log": "x",
    "mypkg/__pycache__/recipes.cpython-311.pyc": "x",
    ".launch/runs/tiny/app.py": "x",
    ".launch/code/abc/mypkg/recipes.py": "x",
    ".venv/pyvenv.cfg": "home = /usr\n",
    "myenv/pyvenv.cfg": "home = /usr\n",
    "myenv/lib/site.py": "x",
    ".pytest_cache/v/x": "x",
    "launcher/shadow.py": "x",  # launcher ships on its own, from the installed package
}
REPO_FILES = {
    "/root/mypkg/__init__.py", "/root/mypkg/recipes.py", "/root/mypkg/recipes.Tiny.schema.json",
    "/root/mypkg/vocab.txt", "/root/mypkg/config.yaml", "/root/configs/base.yaml",
    "/root/jobs/tiny.yaml", "/root/Dockerfile.cuda", "/root/.gitignore",
    "/root/notes/untracked but not ignored.md", "/root/we[i]rd *name?.txt",
}


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    write(repo, USER_FILES)
    git(repo, "init", "-q")
    git(repo, "add", "mypkg", "configs", "jobs", "Dockerfile.cuda", ".gitignore")
    git(repo, "add", "-f", "mypkg/__pycache__")  # tracked, yet CODE_IGNORE still leaves it out
    git(repo, "add", "-f", "train.log")  # tracked despite .gitignore: git ships it, so do we
    return repo


def test_local_code_ships_the_repository_as_git_sees_it(user_repo, tmp_path, monkeypatch) -> None:
    app = render(SPEC, "jobs/tiny.yaml", CodeSource("local"))
    files = shipped(import_app(app, tmp_path, user_repo, monkeypatch))
    repo_files = {path for path, local in files.items() if local.is_relative_to(user_repo)}
    assert repo_files == REPO_FILES | {"/root/train.log"}
    launcher_files = set(files) - repo_files
    package = Path(codeship.__file__).parent
    assert launcher_files == {f"/root/launcher/{p.relative_to(package).as_posix()}"
                              for p in package.rglob("*") if p.is_file()
                              and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert "/root/launcher/recipes/ppo.PPO.schema.json" in launcher_files  # data files too


def test_outside_git_everything_but_code_ignore_and_virtualenvs_ships(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "plain"
    write(folder, USER_FILES)
    app = render(SPEC, "jobs/tiny.yaml", CodeSource("local"))
    files = shipped(import_app(app, tmp_path, folder, monkeypatch))
    assert {path for path, local in files.items() if local.is_relative_to(folder)} == REPO_FILES | {
        "/root/data/big.bin", "/root/train.log"}


def test_the_ignore_rules_are_modals_own_matcher(user_repo) -> None:
    matcher = codeship.code_ignore(user_repo, codeship.CODE_IGNORE)
    assert type(matcher).__module__ == "modal.file_pattern_matcher"
    assert matcher.can_prune_directories()  # so .venv and .git are never walked
    assert [p for p in ("data", "data/big.bin", "myenv", ".venv/x", "mypkg/vocab.txt", "launcher",
                        "sub/launcher/x.py") if matcher(Path(p))] == ["data", "data/big.bin", "myenv",
                                                                       ".venv/x", "launcher"]


@pytest.mark.parametrize("name, pattern", [("plain.txt", "plain.txt"), ("a*b?[c]", "a\\*b\\?\\[c\\]"),
                                           ("!bang", "\\!bang"), ("back\\slash", "back\\\\slash")])
def test_a_path_becomes_a_pattern_that_matches_only_itself(name: str, pattern: str) -> None:
    from modal import FilePatternMatcher

    assert codeship.literal(name) == pattern
    assert FilePatternMatcher(pattern)(Path(name))
    assert not FilePatternMatcher(pattern)(Path(name + "x"))


def test_the_ppo_recipe_runs_stage_1_from_what_the_image_holds(tmp_path, monkeypatch) -> None:
    """Lay out the image's files as the container sees them (/root is where it imports from)
    and build the recipe there: PPO reads its schema JSON beside its module."""
    app = render(SPEC, "tests/golden/code-local/spec.yaml", CodeSource("local"))
    module = import_app(app, tmp_path, ROOT, monkeypatch)
    image = tmp_path / "image"
    for remote, local in shipped(module).items():
        target = image / PurePosixPath(remote).relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(local.read_bytes())
    stage1 = ("import json, sys, launcher; from launcher.runtime.session import Session; "
              "s = Session(json.loads(sys.argv[1])); s.stage1(); "
              "print(launcher.__file__, type(s.recipe).__name__, s.init_error)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LAUNCH_REPO_ROOT")}
    done = subprocess.run([sys.executable, "-c", stage1, json.dumps(module.SPEC)], cwd=image / "root",
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(image / "root" / "launcher" / "__init__.py"), "PPO", "None"]
