"""What the image gets as code, read from the generated app itself: the image's own mounts
(Modal's objects, walked offline) list every file it would upload, and the plan's list
(`codeship.shipped_*`) is the same list, for `code: local` and `code: git` alike.

The last test lays those files out as the container would see them and runs stage 1 from there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
from imagesteps import layers

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


def shipped(module: object) -> dict[str, Path]:
    """Every file the app's image would upload: remote path -> local file."""
    return {remote: local for layer in layers(module.image) for remote, local in layer.files.items()}


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
TREE_FILES = {
    "mypkg/__init__.py", "mypkg/recipes.py", "mypkg/recipes.Tiny.schema.json",
    "mypkg/vocab.txt", "mypkg/config.yaml", "configs/base.yaml",
    "jobs/tiny.yaml", "Dockerfile.cuda", ".gitignore",
    "notes/untracked but not ignored.md", "we[i]rd *name?.txt",
}
REPO_FILES = {f"/opt/project/{name}" for name in TREE_FILES}


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    write(repo, USER_FILES)
    git(repo, "init", "-q")
    git(repo, "add", "mypkg", "configs", "jobs", "Dockerfile.cuda", ".gitignore")
    git(repo, "add", "-f", "mypkg/__pycache__")  # tracked, yet CODE_IGNORE still leaves it out
    git(repo, "add", "-f", "train.log")  # tracked despite .gitignore: git ships it, so do we
    return repo


def launcher_files() -> set[str]:
    package = Path(codeship.__file__).parent
    return {f"/opt/launcher/launcher/{p.relative_to(package).as_posix()}" for p in package.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def test_local_code_ships_the_repository_as_git_sees_it(user_repo, tmp_path, monkeypatch) -> None:
    app = render(SPEC, "jobs/tiny.yaml", CodeSource("local"))
    files = shipped(import_app(app, tmp_path, user_repo, monkeypatch))
    repo_files = {path for path, local in files.items() if local.is_relative_to(user_repo)}
    assert repo_files == REPO_FILES | {"/opt/project/train.log"}
    # What the plan counts is what the image uploads.
    assert {f"/opt/project/{name}" for name in codeship.shipped_tree(user_repo).files} == repo_files
    assert set(files) - repo_files == launcher_files()  # the launcher that rendered the app
    assert "/opt/launcher/launcher/recipes/ppo.PPO.schema.json" in files  # data files too


def test_outside_git_everything_but_code_ignore_and_virtualenvs_ships(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "plain"
    write(folder, USER_FILES)
    app = render(SPEC, "jobs/tiny.yaml", CodeSource("local"))
    files = shipped(import_app(app, tmp_path, folder, monkeypatch))
    assert {path for path, local in files.items() if local.is_relative_to(folder)} == REPO_FILES | {
        "/opt/project/data/big.bin", "/opt/project/train.log"}


def test_launchignore_leaves_files_out_with_gitignore_rules(user_repo) -> None:
    write(user_repo, {".launchignore": "# not code\nconfigs/\n*.txt\n!mypkg/vocab.txt\n"})
    ship = codeship.shipped_tree(user_repo)
    assert set(ship.files) == (TREE_FILES | {"train.log", ".launchignore"}) - {
        "configs/base.yaml", "we[i]rd *name?.txt"}
    assert ship.ignore_rules == 3
    assert ship.files["mypkg/vocab.txt"] == 4 and ship.total == sum(ship.files.values())


def test_code_git_ships_the_commit_less_the_same_rules(user_repo, tmp_path, monkeypatch) -> None:
    write(user_repo, {".launchignore": "configs/\n"})
    git(user_repo, "add", ".launchignore")
    git(user_repo, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "x")
    sha = subprocess.run(["git", "-C", str(user_repo), "rev-parse", "HEAD"], capture_output=True,
                         text=True, check=True).stdout.strip()
    committed = codeship.shipped_commit(user_repo, sha)
    assert set(committed.files) == {"mypkg/__init__.py", "mypkg/recipes.py", "mypkg/recipes.Tiny.schema.json",
                                    "mypkg/vocab.txt", "mypkg/config.yaml", "jobs/tiny.yaml",
                                    "Dockerfile.cuda", ".gitignore", ".launchignore", "train.log"}
    export = codeship.export(user_repo, sha)
    assert codeship.shipped_commit_folder(export) == committed
    app = render(SPEC, "jobs/tiny.yaml", CodeSource("git", None, sha))
    files = shipped(import_app(app, tmp_path, user_repo, monkeypatch))
    assert {path for path, local in files.items() if local.is_relative_to(export)} == {
        f"/opt/project/{name}" for name in committed.files}


def test_the_ppo_recipe_runs_stage_1_from_what_the_image_holds(tmp_path, monkeypatch) -> None:
    """Lay out the image's files as the container sees them (/opt/project the working directory,
    PYTHONPATH as the image sets it) and build the recipe there: PPO reads its schema JSON beside
    its module."""
    app = render(SPEC, "tests/golden/code-local/spec.yaml", CodeSource("local"))
    module = import_app(app, tmp_path, ROOT, monkeypatch)
    image = tmp_path / "image"
    for remote, local in shipped(module).items():
        target = image / PurePosixPath(remote).relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(local.read_bytes())
    stage1 = ("import json, sys, launcher; from launcher.runtime.train.session import Session; "
              "s = Session(json.loads(sys.argv[1])); s.stage1(); "
              "print(launcher.__file__, type(s.recipe).__name__, s.init_error)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LAUNCH_REPO_ROOT")}
    env["PYTHONPATH"] = f"{image}/opt/launcher:{image}/opt/project"
    done = subprocess.run([sys.executable, "-c", stage1, json.dumps(module.SPEC)], cwd=image / "opt/project",
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(image / "opt/launcher/launcher/__init__.py"), "PPO", "None"]


def test_a_symlink_to_a_folder_ships_as_the_link_git_keeps(user_repo) -> None:
    (user_repo / "pkg-link").symlink_to("mypkg", target_is_directory=True)
    git(user_repo, "add", "pkg-link")
    git(user_repo, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "link")
    sha = subprocess.run(["git", "-C", str(user_repo), "rev-parse", "HEAD"], capture_output=True,
                         text=True, check=True).stdout.strip()
    committed = codeship.shipped_commit(user_repo, sha)
    assert committed.files["pkg-link"] == len("mypkg")
    assert codeship.shipped_commit_folder(codeship.export(user_repo, sha)) == committed
    assert codeship.shipped_tree(user_repo).files["pkg-link"] == len("mypkg")
