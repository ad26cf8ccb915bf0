"""`launch JOB --local --shipped`: the job runs from the tree the image gets, laid out in
.launch/shipped/NAME, as the container runs from /opt/project; the plan says what ships and warns
when a pinned HEAD would miss uncommitted changes to the job's files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from launcher import codeship, gitinfo
from launcher.commands.shipped_run import lay_out_shipped
from launcher.errors import RunError
from launcher.load import load_spec
from launcher.runtime.lifecycle import workdir

SPEC = """\
version: 1
name: tiny
image: {{code: {code}}}
train: {{recipe: mypkg.recipes:Tiny}}
"""
RECIPE = "class Tiny:\n    def __init__(self, config, seed):\n        open('data/train.csv').close()\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch) -> Path:
    write(tmp_path, {"mypkg/__init__.py": "", "mypkg/recipes.py": RECIPE, "Dockerfile.cuda": "FROM x\n",
                     "jobs/tiny.yaml": SPEC.format(code="git"), ".gitignore": ".launch/\n*.log\n",
                     "data/train.csv": "1,2\n", "train.log": "x"})
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "mypkg", "Dockerfile.cuda", "jobs", ".gitignore")
    git(tmp_path, "commit", "-qm", "start")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LAUNCH_LOCAL_DIR")  # the repository is the test's own: its .launch/ is checked
    return tmp_path


def laid_out(repo: Path) -> set[str]:
    loaded = load_spec("jobs/tiny.yaml")
    code, target = lay_out_shipped("jobs/tiny.yaml", loaded.spec, gitinfo.find_repo(repo), False)
    assert target == repo / ".launch" / "shipped" / f"tiny-{os.getpid()}"
    return {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}


def test_local_dir_takes_the_shipped_tree_out_of_the_repository(repo, tmp_path_factory, monkeypatch) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.setenv("LAUNCH_LOCAL_DIR", str(elsewhere))
    loaded = load_spec("jobs/tiny.yaml")
    _, target = lay_out_shipped("jobs/tiny.yaml", loaded.spec, gitinfo.find_repo(repo), False)
    assert target == elsewhere / "shipped" / f"tiny-{os.getpid()}"
    assert (target / "mypkg" / "recipes.py").is_file()


def test_code_git_lays_out_the_commit_without_what_is_not_committed(repo) -> None:
    assert laid_out(repo) == {"mypkg/__init__.py", "mypkg/recipes.py", "Dockerfile.cuda", "jobs/tiny.yaml",
                              ".gitignore"}
    git(repo, "add", "data")
    git(repo, "commit", "-qm", "data")
    assert "data/train.csv" in laid_out(repo)  # and a file left over from before is gone again


def test_code_local_lays_out_the_working_tree_as_git_sees_it(repo) -> None:
    (repo / "jobs" / "tiny.yaml").write_text(SPEC.format(code="local"))
    write(repo, {".launchignore": "Dockerfile.cuda\n"})
    assert laid_out(repo) == {"mypkg/__init__.py", "mypkg/recipes.py", "jobs/tiny.yaml", ".gitignore",
                              "data/train.csv", ".launchignore"}


def test_before_the_first_commit_it_says_why_it_cannot(tmp_path, monkeypatch) -> None:
    write(tmp_path, {"jobs/tiny.yaml": SPEC.format(code="git"), "mypkg/__init__.py": ""})
    git(tmp_path, "init", "-q")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunError) as refused:
        laid_out(tmp_path)
    assert str(refused.value) == ("jobs/tiny.yaml: --shipped: image.code is git, but this repository has "
                                  "no commit yet; commit, or pass --use-local-code")


def test_shipped_needs_local(launch, repo) -> None:
    result = launch("jobs/tiny.yaml", "--shipped")
    assert (result.code, result.err.splitlines()[-1]) == (
        2, "Error: --shipped needs --local (it rehearses what the image runs)")


def test_a_worker_runs_from_the_shipped_tree_and_not_from_where_launch_ran(repo, tmp_path) -> None:
    """The untracked module in the working tree is not found from the shipped tree: the error
    Modal's container would raise."""
    write(repo, {"mypkg/extra.py": "X = 1\n"})
    shipped = repo / ".launch" / "shipped" / "tiny"
    export = codeship.export(repo, git(repo, "rev-parse", "HEAD"))
    codeship.lay_out(export, codeship.shipped_commit_folder(export), shipped)
    probe = ("import os; from launcher.runtime.lifecycle import workdir; workdir.enter(); "
             "print(os.getcwd()); import mypkg; print(mypkg.__file__); import mypkg.extra")
    env = {**os.environ, "LAUNCH_WORKDIR": str(shipped)}
    done = subprocess.run([sys.executable, "-c", probe], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.splitlines() == [str(shipped), str(shipped / "mypkg" / "__init__.py")]
    assert done.stderr.splitlines()[-1] == "ModuleNotFoundError: No module named 'mypkg.extra'"
    assert workdir.enter() is None  # without LAUNCH_WORKDIR nothing moves


def test_the_plan_lists_what_ships_and_warns_of_missed_changes(launch, repo) -> None:
    write(repo, {"mypkg/extra.py": "X = 1\n", "notes.md": "x"})
    result = launch("--dry-run", "jobs/tiny.yaml")
    head = git(repo, "rev-parse", "HEAD")
    lines = result.err.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("code        "))
    assert lines[at + 1].startswith("  ships     5 files, ")
    assert lines[at + 2] == ("  left out  .git, .launch, launcher (shipped on its own), caches and virtualenvs, "
                             "and .launchignore (none: add one to leave more out)")
    assert lines[at + 3] == (f"warning: image.code is git, which ships commit {head[:12]}, without these "
                             "uncommitted changes: mypkg/extra.py; commit them, or pass --use-local-code "
                             "(`launch` refuses to run until then)")  # notes.md does not matter to the job


def test_a_large_ship_set_is_warned_about(repo, monkeypatch) -> None:
    from launcher import shipreport

    monkeypatch.setattr(codeship, "LARGE_BYTES", 10)
    lines = shipreport.ship_lines(codeship.shipped_tree(repo))
    assert lines[-1].startswith("warning: the shipped code is ")
    assert lines[-1].endswith("every image build uploads it; leave data and outputs out with .launchignore "
                              "(gitignore syntax) and read them from a volume")
