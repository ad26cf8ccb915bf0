"""The pre-commit hook in .pre-commit-hooks.yaml, run as pre-commit runs it: entry + file names."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
HOOKS = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text("utf-8"))
HOOK = next(h for h in HOOKS if h["id"] == "launch-check")
BAD = """\
version: 1
name: bad
compute:
  gpu: H100
  gpu_count: 12
train:
  recipe: launcher.recipes.ppo:PPO
"""


def run_hook(cwd: Path, staged: list[str]) -> subprocess.CompletedProcess[str]:
    """What pre-commit does: keep the staged files that match `files`, append them to `entry`."""
    matched = [f for f in staged if re.search(HOOK["files"], f)]
    command, *args = shlex.split(HOOK["entry"])
    # pre-commit runs the entry from the hook's own environment: this interpreter's, not PATH's.
    entry = Path(sys.executable).parent / command
    return subprocess.run([str(entry), *args, *matched], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_the_hook_is_declared_for_pre_commit() -> None:
    assert len(HOOKS) == 1
    assert {k: HOOK[k] for k in ("id", "entry", "language", "files")} == {
        "id": "launch-check", "entry": "launch check", "language": "python",
        "files": r"^jobs/.*\.ya?ml$"}
    assert HOOK.get("pass_filenames", True) is True


@pytest.mark.parametrize("path, matches", [
    ("jobs/ppo.yaml", True), ("jobs/team/ppo.yml", True), ("jobs/notes.md", False),
    ("tests/specs/good/minimal.yaml", False), ("myjobs/ppo.yaml", False), ("jobs/ppo.yaml.bak", False),
])
def test_files_selects_specs_under_jobs(path: str, matches: bool) -> None:
    assert bool(re.search(HOOK["files"], path)) is matches


def test_the_hook_passes_on_every_example(tmp_path) -> None:
    jobs = sorted(f"jobs/{p.name}" for p in (ROOT / "jobs").glob("*.yaml"))
    done = run_hook(ROOT, [*jobs, "README.md", "launcher/cli.py"])
    assert (done.returncode, done.stdout, done.stderr) == (0, "", f"{len(jobs)} specs ok\n")


def test_the_hook_fails_on_a_bad_spec_and_names_the_place(tmp_path) -> None:
    (tmp_path / "jobs").mkdir()
    shutil.copy(ROOT / "jobs" / "ppo.yaml", tmp_path / "jobs" / "good.yaml")
    shutil.copy(ROOT / "Dockerfile.cuda", tmp_path)  # the repository's image, which check requires
    (tmp_path / "jobs" / "bad.yaml").write_text(BAD, "utf-8")
    (tmp_path / "notes.yaml").write_text(BAD, "utf-8")  # not under jobs/: not passed
    done = run_hook(tmp_path, ["jobs/good.yaml", "jobs/bad.yaml", "notes.yaml"])
    assert (done.returncode, done.stdout, done.stderr) == (
        1, "", "jobs/bad.yaml:5:14: $.compute.gpu_count: 12 is greater than the maximum of 8\n"
               "2 specs checked, 1 with problems\n")
