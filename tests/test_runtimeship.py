"""The image runs the launcher that rendered its app, whatever the Dockerfile installs: the
app's own image steps, read offline from Modal's objects, pin the runtime's dependencies to
the versions installed here and copy this installation's `launcher` package first on
PYTHONPATH; no step resolves the launcher by name from an index."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from imagesteps import layers

import launcher
from launcher import runtimeship
from launcher.codesource import CodeSource
from launcher.errors import RunError
from launcher.load import load_spec
from launcher.render import render

ROOT = Path(__file__).resolve().parent.parent
SPEC = load_spec(ROOT / "tests" / "golden" / "code-local" / "spec.yaml").spec


def import_app(text: str, repo: Path, monkeypatch) -> object:
    path = repo / ".launch" / "app.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    monkeypatch.setenv("LAUNCH_REPO_ROOT", str(repo))
    found = importlib.util.spec_from_file_location(f"runtime_app_{id(path)}", path)
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile.cuda").write_text('FROM python:3.11\nRUN pip install "launcher==0.1"\n')
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    return tmp_path


def installed_version(name: str) -> str:
    return importlib.metadata.version(name).split("+")[0]


@pytest.mark.parametrize("code", [CodeSource("local"), CodeSource("git", None, "0" * 40)], ids=["local", "git"])
def test_the_image_runs_the_launcher_that_rendered_it(code, repo, monkeypatch) -> None:
    (repo / ".launch" / "code" / ("0" * 40)).mkdir(parents=True)  # what `launch` exports
    module = import_app(render(SPEC, "jobs/a.yaml", code), repo, monkeypatch)
    assert module.LAUNCHER_VERSION == launcher.__version__
    steps = layers(module.image)
    assert [s.name for s in steps[1:]] == ["uv_pip_install", "_copy_mount", "env", "workdir", "_copy_mount",
                                           "run_commands"]
    # The runtime's dependencies, at the versions this process runs with, uv pinned as well.
    install = steps[1].commands
    assert install[1] == f"COPY --from=ghcr.io/astral-sh/uv:{runtimeship.UV_VERSION} /uv /.uv/uv"
    assert shlex.split(install[2])[-5:] == sorted(
        f"{name}=={installed_version(name)}" for name in ("torch", "accelerate", "numpy", "tensorboard", "tqdm"))
    # This installation's package, whole, at /opt/launcher/launcher, first on PYTHONPATH.
    package = Path(launcher.__file__).parent
    assert steps[2].files == {f"/opt/launcher/launcher/{p.relative_to(package).as_posix()}": p
                              for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    shipped_init = steps[2].files["/opt/launcher/launcher/__init__.py"].read_text("utf-8")
    assert re.search(r'^__version__ = "(.+)"$', shipped_init, re.M)[1] == launcher.__version__
    assert steps[3].commands[1] == "ENV PYTHONPATH=/opt/launcher:/opt/project"
    assert steps[4].commands[1] == "WORKDIR /opt/project"
    # No step asks an index for the launcher by name.
    runs = [c for s in steps for c in s.commands if c.startswith("RUN")]
    assert not [c for c in runs for word in shlex.split(c) if re.match(r"(modal-)?launcher\b", word)]
    assert runs[-1] == "RUN python -c 'import launcher.runtime.train.session, launcher.recipes.ppo'"


def test_an_app_rendered_by_another_launcher_version_is_refused_where_it_deploys(repo, monkeypatch) -> None:
    text = render(SPEC, "jobs/a.yaml", CodeSource("local")).replace(
        f"LAUNCHER_VERSION = {launcher.__version__!r}", "LAUNCHER_VERSION = '0.0.1'")
    with pytest.raises(RunError) as refused:
        import_app(text, repo, monkeypatch)
    assert str(refused.value) == (
        f"this app was rendered by launcher 0.0.1, but launcher {launcher.__version__} is installed "
        "here; render it again with `launch --dry-run SPEC --out FILE`, or launch the spec itself")


def test_inside_the_container_nothing_is_pinned_again(monkeypatch) -> None:
    import modal

    monkeypatch.setattr(modal, "is_local", lambda: False)
    assert runtimeship.pins("any version") == []


def test_a_dependency_not_installed_keeps_the_extras_range(monkeypatch) -> None:
    real = importlib.metadata.version

    def version(name: str) -> str:
        if name == "tensorboard":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert runtimeship.installed_pins()[3] == "tensorboard>=2.14"
    assert runtimeship.public_version("2.13.0+cpu") == "2.13.0"
