"""The `local` extra: `modal-launcher` is the CLI alone; `--local` asks for the runtime in
one line when it is missing."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from launcher import extras, runtimeship

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))


def names(requirements: list[str]) -> list[str]:
    return [re.match(r"[A-Za-z0-9._-]+", r)[0].lower() for r in requirements]


def test_the_checked_modules_are_the_local_extra() -> None:
    assert tuple(names(PYPROJECT["project"]["optional-dependencies"]["local"])) == extras.RUNTIME_MODULES


def test_the_cli_needs_no_runtime_and_dev_brings_it() -> None:
    assert not set(names(PYPROJECT["project"]["dependencies"])) & set(extras.RUNTIME_MODULES)
    assert "modal-launcher[local,examples,wandb]" in PYPROJECT["project"]["optional-dependencies"]["dev"]
    assert "modal-launcher[sweep,report]" in PYPROJECT["project"]["optional-dependencies"]["dev"]


def test_wandb_is_an_extra_of_its_own_not_the_runtimes() -> None:
    extras_ = PYPROJECT["project"]["optional-dependencies"]
    assert names(extras_["wandb"]) == ["wandb"] and "wandb" not in names(extras_["local"])


def test_report_s_matplotlib_is_an_extra_of_its_own() -> None:
    optional = PYPROJECT["project"]["optional-dependencies"]
    assert names(optional["report"]) == ["matplotlib"]
    assert "matplotlib" not in names(PYPROJECT["project"]["dependencies"]) + names(optional["local"])


@pytest.mark.parametrize("hidden", [("torch",), ("torch", "accelerate"), extras.RUNTIME_MODULES])
def test_local_without_the_runtime_says_which_install_is_missing(hidden, launch, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    for name in hidden:  # None in sys.modules: Python's own way to make an import fail
        monkeypatch.setitem(sys.modules, name, None)
    assert launch("jobs/ppo.yaml", "--local") == (
        1, "", f"--local: the training runtime is not installed (no {', '.join(hidden)}); "
               f"install it with: {runtimeship.install_hint()}\n")


def test_with_the_runtime_nothing_is_missing() -> None:
    assert extras.missing() == []


def test_the_hint_installs_the_extra_from_where_launcher_came_from(tmp_path, monkeypatch) -> None:
    """A checkout (editable or not) or a wheel: PyPI's `launcher` is another project, and
    `modal-launcher` may be on no index the user can reach."""
    def installed(origin: str | None) -> None:
        info = tmp_path / f"site{id(origin)}" / "modal_launcher-0.1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: modal-launcher\nVersion: 0.1.0\n")
        if origin is not None:
            (info / "direct_url.json").write_text(origin)
        monkeypatch.setattr(sys, "path", [str(info.parent)])

    installed('{"url": "file:///src/launcher", "dir_info": {"editable": true}}')
    assert runtimeship.install_hint() == "pip install -e '/src/launcher[local]'"
    installed('{"url": "file:///w/modal_launcher-0.1.0-py3-none-any.whl", "archive_info": {}}')
    assert runtimeship.install_hint() == "pip install '/w/modal_launcher-0.1.0-py3-none-any.whl[local]'"
    installed(None)  # from an index
    assert runtimeship.install_hint() == "pip install 'modal-launcher[local]'"


def test_every_package_of_launcher_ships() -> None:
    # A non-editable install (CI, the image) has only the packages pyproject.toml lists.
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "launcher").rglob("__init__.py")}
    assert found - listed == set()
