"""The suite's own isolation (tests/conftest.py): each test's state folders are its own, and a
session that leaves anything in the checkout fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import ROOT, changes, checkout_state

from launcher.backends import local
from launcher.load import load_spec


def test_a_test_s_home_tmp_and_local_runs_are_its_own(isolated: Path) -> None:
    assert os.environ["HOME"] == str(isolated / "home")
    assert tempfile.gettempdir() == os.environ["TMPDIR"] == str(isolated / "tmp")
    spec = load_spec(ROOT / "jobs" / "ppo.yaml").spec
    runs, volumes = local.folders(spec, ROOT, local.Options())  # a run of the checkout's job
    assert runs.is_relative_to(isolated) and volumes.is_relative_to(isolated)
    assert not runs.is_relative_to(ROOT)
    assert not Path(os.environ["XDG_CACHE_HOME"]).is_relative_to(Path.home())


def _repo(folder: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    (folder / ".gitignore").write_text(".launch/\n")
    (folder / ".launch" / "volumes").mkdir(parents=True)
    subprocess.run(["git", "-C", str(folder), "add", "."], check=True)
    subprocess.run(["git", "-C", str(folder), "commit", "-qm", "start"], check=True)
    return folder


def test_a_file_written_under_an_ignored_folder_is_a_change(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    before = checkout_state(repo)
    (repo / "__pycache__").mkdir()
    (repo / "__pycache__" / "x.pyc").write_bytes(b"")  # the interpreter's, not a test's
    assert changes(before, checkout_state(repo)) == []
    (repo / ".launch" / "volumes" / "state.json").write_text("{}")
    assert [line.split(":")[0].strip() for line in changes(before, checkout_state(repo))] == [
        ".launch/volumes", ".launch/volumes/state.json"]


def test_a_session_that_writes_into_the_checkout_fails(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    (repo / "tests").mkdir()
    shutil.copy(ROOT / "tests" / "conftest.py", repo / "tests" / "conftest.py")
    (repo / "tests" / "test_writes.py").write_text(
        "from pathlib import Path\n\n"
        "def test_writes() -> None:\n"
        "    (Path(__file__).parent.parent / '.launch' / 'volumes' / 'left.txt').write_text('x')\n")
    subprocess.run(["git", "-C", str(repo), "add", "tests"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "tests"], check=True)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=repo,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 passed" in run.stdout
    assert "the tests changed the checkout" in run.stdout
    assert "  .launch/volumes/left.txt: absent -> !! 1 " in run.stdout
