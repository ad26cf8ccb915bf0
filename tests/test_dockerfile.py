"""The image's Dockerfile: refused when missing (check, dry-run, run), resolved from the repository
root; the starter that `launch init` writes; launcher's own Dockerfile.cuda."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from launcher import __version__, dockerfile

ROOT = Path(__file__).resolve().parent.parent
SPEC = "version: 1\nname: job\nimage:\n  code: local\n  dockerfile: {path}\ntrain: {{recipe: launcher.recipes.ppo:PPO}}\n"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch) -> Path:
    repo = tmp_path / "repo"
    (repo / "jobs").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    monkeypatch.chdir(repo / "jobs")  # not the root: the Dockerfile is still looked for there
    return repo


def missing(path: Path, hint: str) -> str:
    return (f"no Dockerfile at {path} (image.dockerfile is relative to the repository root); "
            f"`{hint}` writes a starter one")


@pytest.mark.parametrize("command", [("check",), ("--dry-run",)])
def test_a_missing_dockerfile_is_refused_where_the_spec_names_it(command, repo, launch) -> None:
    (repo / "jobs" / "job.yaml").write_text(SPEC.format(path="docker/train.Dockerfile"))
    result = launch(*command, "job.yaml")
    message = ("job.yaml:5:15: $.image.dockerfile: "
               + missing(repo / "docker/train.Dockerfile", "launch init --dockerfile docker/train.Dockerfile"))
    summary = "1 spec checked, 1 with problems\n" if command == ("check",) else ""
    assert (result.code, result.out, result.err) == (1, "", message + "\n" + summary)
    (repo / "docker").mkdir()
    (repo / "docker" / "train.Dockerfile").write_text("FROM python:3.11\n")
    assert launch(*command, "job.yaml").code == 0


@pytest.mark.parametrize("command", [("check",), ("--dry-run",)])
def test_a_dockerfile_outside_the_repository_is_refused(command, repo, launch) -> None:
    # `init --dockerfile` refuses the same path: the Dockerfile and its context stay inside.
    (repo / "jobs" / "job.yaml").write_text(SPEC.format(path="../../../etc/passwd"))
    result = launch(*command, "job.yaml")
    assert (result.code, result.out) == (1, "")
    assert result.err.splitlines()[0] == (
        "job.yaml:5:15: $.image.dockerfile: '../../../etc/passwd' leaves the repository: the "
        "Dockerfile and its build context stay inside it; give a path relative to the repository root")
    assert "root:" not in result.err


@pytest.mark.parametrize("command", [("check",), ("--dry-run",)])
def test_a_dockerfile_that_links_out_of_the_repository_is_refused(command, repo, launch) -> None:
    (repo / "Dockerfile.cuda").symlink_to("/etc/passwd")
    (repo / "jobs" / "job.yaml").write_text(SPEC.format(path="Dockerfile.cuda"))
    result = launch(*command, "job.yaml")
    assert (result.code, result.out) == (1, "")
    assert result.err.splitlines()[0] == (
        f"job.yaml:5:15: $.image.dockerfile: 'Dockerfile.cuda' leads out of the repository ({repo}) "
        "through a symbolic link: the Dockerfile and its build context stay inside it")


def test_the_default_dockerfile_is_named_at_the_image_section_or_the_top(repo, launch) -> None:
    (repo / "jobs" / "a.yaml").write_text("version: 1\nname: a\nimage: {code: local}\n"
                                          "train: {recipe: launcher.recipes.ppo:PPO}\n")
    (repo / "jobs" / "b.yaml").write_text("version: 1\nname: b\ntrain: {recipe: launcher.recipes.ppo:PPO}\n")
    result = launch("check", "a.yaml", "b.yaml")
    hint = missing(repo / "Dockerfile.cuda", "launch init")
    assert result.err == (f"a.yaml:3:8: $.image.dockerfile: {hint}\n"
                          f"b.yaml:1:1: $.image.dockerfile: {hint}\n"
                          "2 specs checked, 2 with problems\n")


def test_launching_on_modal_refuses_it_before_anything_else(repo, launch, monkeypatch) -> None:
    monkeypatch.setattr("launcher.commands.modal_run.has_credentials", lambda: True)
    (repo / "jobs" / "job.yaml").write_text(SPEC.format(path="Dockerfile.cuda"))
    assert launch("job.yaml") == (1, "", "job.yaml:5:15: $.image.dockerfile: "
                                         + missing(repo / "Dockerfile.cuda", "launch init") + "\n")
    assert not (repo / ".launch").exists()


def test_outside_git_it_is_looked_for_where_launch_runs(tmp_path, launch, monkeypatch) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "job.yaml").write_text(SPEC.format(path="Dockerfile.cuda"))
    (tmp_path / "specs" / "Dockerfile.cuda").write_text("FROM python:3.11\n")  # beside the spec: not it
    monkeypatch.chdir(tmp_path)
    assert launch("check", "specs/job.yaml").err.startswith(
        "specs/job.yaml:5:15: $.image.dockerfile: " + missing(tmp_path / "Dockerfile.cuda", "launch init"))
    (tmp_path / "Dockerfile.cuda").write_text("FROM python:3.11\n")
    assert launch("check", "specs/job.yaml").code == 0


# --- the starter ------------------------------------------------------------------------------

def deps_layer(text: str) -> list[str]:
    """The starter's lines between the runtime's install and the closing import check: the
    dependency layer."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(" && uv pip install --system \"accelerate=="))
    return lines[start + 1:lines.index("# Last: the runtime's imports, so a broken image fails while it builds. Your code is added after") - 1]


PYPROJECT = '[project]\nname = "mine"\nversion = "1"\ndependencies = ["numpy"]\n'


@pytest.mark.parametrize("files, layer", [
    ({}, [
        "", "# Your dependencies: no pyproject.toml (with a [project] table), requirements.txt or uv.lock was",
        "# found when this file was written. Add them here, before any step that copies code, e.g.",
        "#   COPY requirements.txt /opt/deps/",
        "#   RUN uv pip install --system -r /opt/deps/requirements.txt"]),
    ({"pyproject.toml": PYPROJECT}, [
        "", "# Your dependencies, from pyproject.toml alone: cached until it changes.",
        "WORKDIR /opt/deps", "COPY pyproject.toml ./", "RUN uv pip install --system -r pyproject.toml"]),
    ({"requirements.txt": "numpy\n"}, [
        "", "# Your dependencies, from requirements.txt alone: cached until it changes.",
        "WORKDIR /opt/deps", "COPY requirements.txt ./", "RUN uv pip install --system -r requirements.txt"]),
    ({"pyproject.toml": PYPROJECT, "uv.lock": "version = 1\n", "requirements.txt": "numpy\n"}, [
        "", "# Your dependencies, from pyproject.toml, uv.lock and requirements.txt alone: cached until "
            "they change.",
        "WORKDIR /opt/deps", "COPY pyproject.toml uv.lock ./",
        "RUN uv export --frozen --no-dev --no-emit-project --no-hashes -o locked.txt \\",
        " && uv pip install --system -r locked.txt",
        "COPY requirements.txt ./", "RUN uv pip install --system -r requirements.txt"]),
])
def test_the_starter_installs_the_dependencies_the_repository_declares(files, layer, tmp_path) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert deps_layer(dockerfile.starter(tmp_path)) == layer


@pytest.mark.parametrize("pyproject", ["[tool.ruff]\nline-length = 99\n", "[project\n",
                                       '[project]\nname = "x"\ndynamic = ["dependencies"]\n'])
def test_a_pyproject_without_static_dependencies_is_not_installed_from(pyproject, tmp_path) -> None:
    (tmp_path / "pyproject.toml").write_text(pyproject)
    (tmp_path / "uv.lock").write_text("version = 1\n")
    assert dockerfile.dependency_files(tmp_path) == []


def test_the_starter_never_copies_code_nor_installs_the_launcher(tmp_path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    text = dockerfile.starter(tmp_path)
    assert text.startswith("# The training image for this repository's launcher jobs, written by "
                           f"`launch init` (launcher\n# {__version__}); yours to edit.")
    assert "install.sh" not in text and "launcher[" not in text
    assert [line for line in text.splitlines() if line.startswith(("COPY", "ADD"))] == [
        "COPY --from=ghcr.io/astral-sh/uv:0.13.8 /uv /uvx /usr/local/bin/", "COPY pyproject.toml ./"]
    assert text.endswith('\nRUN python -c "import torch, accelerate, numpy, tensorboard, tqdm"\n')


def test_launchers_own_dockerfile_installs_dependencies_and_no_code() -> None:
    steps = [line for line in (ROOT / "Dockerfile.cuda").read_text().splitlines()
             if re.match(r"(COPY|RUN|WORKDIR) ", line)]
    deps = steps.index("RUN uv pip install --system -r pyproject.toml --extra local --extra examples")
    assert steps[deps - 1] == "COPY pyproject.toml ./"  # the dependency layer sees pyproject.toml alone
    assert [s for s in steps if s.startswith("COPY")] == [
        "COPY --from=ghcr.io/astral-sh/uv:0.13.8 /uv /uvx /usr/local/bin/", "COPY pyproject.toml ./"]
    assert steps[-1] == 'RUN python -c "import torch, accelerate, numpy, tensorboard, tqdm, sklearn"'
    assert "[dev]" not in (ROOT / "Dockerfile.cuda").read_text()  # no test tools in the image


def instructions(lines: list[str]) -> list[tuple[str, str]]:
    """Dockerfile lines as (instruction, argument), continuation lines joined, comments dropped."""
    found, pending = [], ""
    for line in lines:
        if line.startswith("#") or not line.strip():
            continue
        pending += line.removesuffix("\\").strip() + " "
        if not line.endswith("\\"):
            word, _, argument = pending.strip().partition(" ")
            found.append((word, argument))
            pending = ""
    return found


@pytest.fixture(scope="module")
def uv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """uv, as the image gets it (its own package on PyPI ships the same binary)."""
    venv = tmp_path_factory.mktemp("uv") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "uv"], check=True,
                   capture_output=True, timeout=600)
    return venv / "bin"


def test_the_starters_dependency_layer_runs_with_only_the_files_it_copies(uv: Path, tmp_path) -> None:
    """The layer's COPY and RUN lines, run by uv in a folder holding only what they copy; the one
    change is the target, a virtualenv here instead of the image's system Python."""
    repo, build = tmp_path / "repo", tmp_path / "build"
    (repo / "mypkg").mkdir(parents=True)
    (repo / "mypkg" / "__init__.py").write_text("")
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "mypkg"\nversion = "1"\nrequires-python = ">=3.11"\ndependencies = ["six"]\n'
        '\n[dependency-groups]\ndev = ["pytest"]\n')
    (repo / "requirements.txt").write_text("idna\n")
    env = {**os.environ, "PATH": f"{uv}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["uv", "lock", "-q"], cwd=repo, env=env, check=True, timeout=300)
    target = tmp_path / "target"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True, timeout=300)
    layer = deps_layer(dockerfile.starter(repo))
    assert layer[3] == "COPY pyproject.toml uv.lock ./"
    build.mkdir()
    for word, argument in instructions(layer):
        if word == "COPY":
            for name in argument.split()[:-1]:
                shutil.copy(repo / name, build)
        elif word == "RUN":
            command = argument.replace("--system", f"--python {target}/bin/python")
            subprocess.run(["bash", "-c", command], cwd=build, env=env, check=True, timeout=300,
                           capture_output=True)
    installed = subprocess.run([str(target / "bin/python"), "-c", "import six, idna, importlib.util as u; "
                                "print(u.find_spec('pytest') is None, u.find_spec('mypkg') is None)"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert installed.stdout.split() == ["True", "True"]  # no dev group, not the project itself
