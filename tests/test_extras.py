"""The `local` extra: `pip install launcher` is the CLI alone; `--local` asks for the runtime in
one line when it is missing."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from launcher import extras

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))


def names(requirements: list[str]) -> list[str]:
    return [re.match(r"[A-Za-z0-9._-]+", r)[0].lower() for r in requirements]


def test_the_checked_modules_are_the_local_extra() -> None:
    assert tuple(names(PYPROJECT["project"]["optional-dependencies"]["local"])) == extras.RUNTIME_MODULES


def test_the_cli_needs_no_runtime_and_dev_brings_it() -> None:
    assert not set(names(PYPROJECT["project"]["dependencies"])) & set(extras.RUNTIME_MODULES)
    assert "launcher[local,examples]" in PYPROJECT["project"]["optional-dependencies"]["dev"]


@pytest.mark.parametrize("hidden", [("torch",), ("torch", "accelerate"), extras.RUNTIME_MODULES])
def test_local_without_the_runtime_says_which_install_is_missing(hidden, launch, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    for name in hidden:  # None in sys.modules: Python's own way to make an import fail
        monkeypatch.setitem(sys.modules, name, None)
    assert launch("jobs/ppo.yaml", "--local") == (
        1, "", f"--local: the training runtime is not installed (no {', '.join(hidden)}); "
               "install it with: pip install 'launcher[local]'\n")


def test_with_the_runtime_nothing_is_missing() -> None:
    assert extras.missing() == []
