"""Shared fixtures: run `launch` in-process and capture what it prints; and the suite's isolation.

Like pre-commit's own suite, no test writes into the checkout or the home folder: every test runs
with HOME, TMPDIR and the launcher's local folder (LAUNCH_LOCAL_DIR: runs, volumes, shipped trees)
in a temporary directory, a git identity of its own, caches (XDG_CACHE_HOME, Hypothesis) in one
per session, and the session fails when the checkout's working tree, ignored files included,
differs at its end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

from collections.abc import Iterator

import pytest
from hypothesis import configuration as hypothesis_configuration

from launcher.cli import main

ROOT = Path(__file__).resolve().parent.parent
# Written by the interpreter and the tools themselves, never by the code under test.
NOT_STATE = ("__pycache__", ".pytest_cache", ".egg-info")


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


def checkout_state(root: Path = ROOT) -> dict[str, str]:
    """Every path git reports in the checkout (changed, untracked, ignored: git names an ignored
    folder alone, so each file under it too), with its size and mtime, which show a change that
    `git status` alone would not."""
    out = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "-z", "--ignored=matching",
                          "--untracked-files=all"], capture_output=True, text=True, check=True).stdout
    state: dict[str, str] = {}
    for entry in filter(None, out.split("\0")):
        code, path = entry[:2], entry[3:]
        if not _is_tool_output(Path(path)):
            state[path] = code + _stat(root / path)
            if code == "!!" and (root / path).is_dir():
                for found in sorted((root / path).rglob("*")):
                    if not _is_tool_output(found.relative_to(root)):
                        state[found.relative_to(root).as_posix()] = code + _stat(found)
    return state


def _is_tool_output(path: Path) -> bool:
    return any(part in NOT_STATE or part.endswith(NOT_STATE) for part in path.parts)


def _stat(path: Path) -> str:
    if not path.exists():
        return ""
    stat = path.lstat()
    return f" {stat.st_size} {stat.st_mtime_ns}"


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """`git status`-like lines for what differs between two `checkout_state`s."""
    return [f"  {path}: {before.get(path, 'absent')} -> {after.get(path, 'absent')}"
            for path in sorted(before.keys() | after.keys()) if before.get(path) != after.get(path)]


CHECKOUT = pytest.StashKey[dict[str, str]]()
SESSION = pytest.StashKey[tuple[Path, dict[str, str | None]]]()


def isolating_env(folder: Path) -> dict[str, str]:
    """The environment that keeps a run's state and caches under `folder`."""
    return {"HOME": str(folder / "home"), "XDG_CACHE_HOME": str(folder / "cache"),
            "LAUNCH_LOCAL_DIR": str(folder / "launch"),
            # The home folder's git identity is gone with it: commits in test repositories get this one.
            **{f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER")
               for what, value in (("NAME", "launch tests"), ("EMAIL", "tests@launch.invalid"))}}


def pytest_configure(config: pytest.Config) -> None:
    config.stash[CHECKOUT] = checkout_state()
    # For the session and module fixtures too, which run before any test's own `isolated`.
    folder = Path(tempfile.mkdtemp(prefix="launch-tests-"))
    env = isolating_env(folder)
    config.stash[SESSION] = folder, {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    # Hypothesis keeps its example database in .hypothesis/ of the working directory by default.
    hypothesis_configuration.set_hypothesis_home_dir(folder / "hypothesis")


def pytest_unconfigure(config: pytest.Config) -> None:
    if SESSION not in config.stash:
        return
    folder, saved = config.stash[SESSION]
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    shutil.rmtree(folder, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session when a test left anything in the checkout."""
    changed = changes(session.config.stash[CHECKOUT], checkout_state())
    if changed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = ["the tests changed the checkout (each test must write under its tmp_path):", *changed]
        if reporter is not None:
            reporter.write_line("")
            reporter.write_line("\n".join(lines), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """HOME, TMPDIR and LAUNCH_LOCAL_DIR of this test, in and out of process: a folder of its own.
    The cache stays the session's (Jinja's compiled templates save each render most of its time)."""
    folder = tmp_path_factory.mktemp("isolated")
    for name in ("home", "tmp", "launch"):
        (folder / name).mkdir()
    for name, value in isolating_env(folder).items():
        if name != "XDG_CACHE_HOME":
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("TMPDIR", str(folder / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(folder / "tmp"))
    # Code run in process may set LAUNCH_* variables as a container does (the run id a Modal
    # call adopts): whatever a test sets is undone after it.
    saved = {n: v for n, v in os.environ.items() if n.startswith("LAUNCH_")}
    yield folder
    for name in [n for n in os.environ if n.startswith("LAUNCH_") and n not in saved]:
        del os.environ[name]
    os.environ.update(saved)
