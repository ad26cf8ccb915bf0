"""Shared fixtures: run `launch` in-process and capture what it prints."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from launcher.cli import main


class Result(NamedTuple):
    code: int
    out: str
    err: str


@pytest.fixture
def launch(capsys: pytest.CaptureFixture[str]):
    """`launch(*args)` runs the CLI as `launch ARGS...` would and returns code, stdout, stderr."""
    capsys.readouterr()  # drop anything printed before the call under test

    def run(*args: str) -> Result:
        code = main(list(args))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run
