"""launcher.gitinfo against real repositories: the root (before the first commit too), user info
stripped from remotes, a commit's packaging metadata; and where .launch/ goes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from launcher import gitinfo
from launcher.backends import local, pipeline
from launcher.commands import local_run
from launcher.load import load_spec

ROOT = Path(__file__).resolve().parent.parent


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(repo: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text, "utf-8")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "c")
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def fresh(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "jobs").mkdir(parents=True)
    git(repo, "init", "-q")
    return repo


def test_before_the_first_commit_the_root_is_gits_top_level(fresh) -> None:
    assert gitinfo.find_repo(fresh / "jobs" / "job.yaml") == gitinfo.Repo(fresh.resolve(), None, True)
    head = commit(fresh, {"a.py": "x = 1\n"})
    assert gitinfo.find_repo(fresh / "jobs") == gitinfo.Repo(fresh.resolve(), head, True)


def test_outside_git_the_root_is_where_launch_runs(tmp_path, monkeypatch) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert gitinfo.find_repo(tmp_path / "specs" / "job.yaml") == gitinfo.Repo(tmp_path / "here", None, False)


@pytest.mark.parametrize("inside_git", [True, False])
def test_a_local_run_keeps_its_files_under_the_roots_launch_folder(inside_git: bool, fresh, launch,
                                                                   monkeypatch) -> None:
    # Before the first commit the spec's folder was taken for the root: jobs/.launch/.
    (fresh / "jobs" / "job.yaml").write_text((ROOT / "jobs" / "ppo.yaml").read_text())
    if not inside_git:
        (fresh / ".git").rename(fresh.parent / "moved.git")
    monkeypatch.chdir(fresh)
    roots = []
    # The job has stages: the second runs it (imported when the spec is known).
    for module, runner in ((local_run, "run_local"), (pipeline, "run_pipeline_local")):
        monkeypatch.setattr(module, runner,
                            lambda spec, app, root, options, early=None, **_: roots.append(root) or 0)
    assert launch("jobs/job.yaml", "--local").code == 0
    assert roots == [fresh.resolve()]


def test_local_dir_moves_runs_volumes_and_shipped_trees_out_of_the_repository(fresh, monkeypatch) -> None:
    spec = load_spec(ROOT / "jobs" / "ppo.yaml").spec
    monkeypatch.delenv("LAUNCH_LOCAL_DIR")
    assert local.folders(spec, fresh, local.Options()) == (fresh / ".launch/runs/ppo-cartpole",
                                                            fresh / ".launch/volumes")
    monkeypatch.setenv("LAUNCH_LOCAL_DIR", str(fresh.parent / "state"))
    assert local.folders(spec, fresh, local.Options()) == (fresh.parent / "state/runs/ppo-cartpole",
                                                            fresh.parent / "state/volumes")
    assert local.folders(spec, fresh, local.Options(volumes_dir=fresh / "v"))[1] == fresh / "v"


@pytest.mark.parametrize("url, shown", [
    ("https://github.com/org/repo.git", "https://github.com/org/repo.git"),
    ("https://user:token@github.com/org/repo.git", "https://github.com/org/repo.git"),
    ("https://oauth2:glpat-xyz@gitlab.com/org/repo.git", "https://gitlab.com/org/repo.git"),
    ("https://gitlab-ci-token:a@b@gitlab.com/org/r@po.git", "https://gitlab.com/org/r@po.git"),
    ("http://user@host:8080/r.git", "http://host:8080/r.git"),
    ("ssh://git@github.com/org/repo.git", "ssh://github.com/org/repo.git"),
    ("ssh://github.com/org/repo.git", "ssh://github.com/org/repo.git"),
    ("git@github.com:org/repo.git", "github.com:org/repo.git"),
    ("github.com:org/re@po.git", "github.com:org/re@po.git"),
    ("file:///srv/git/repo.git", "file:///srv/git/repo.git"),
    ("/srv/git/repo.git", "/srv/git/repo.git"),
    ("../me@home/repo", "../me@home/repo"),
    ("https://github.com/org/repo.git?access_token=ghp_AbC123", "https://github.com/org/repo.git"),
    ("https://host/repo.git?token=opaque123#frag", "https://host/repo.git"),
    ("https://u:p@host:8443/repo.git?x=1", "https://host:8443/repo.git"),
    ("git@host:org/repo.git?private_token=opaque123", "host:org/repo.git"),
])
def test_user_info_is_stripped_from_every_form_of_remote(url: str, shown: str) -> None:
    assert gitinfo.safe_url(url) == shown


def test_a_ref_is_never_read_as_an_option(fresh) -> None:
    commit(fresh, {"a": "1\n"})
    repo = gitinfo.find_repo(fresh)
    assert gitinfo.lookup(repo, "--output=/tmp/x") is None
    assert gitinfo.lookup(repo, "no-such-branch") is None
    assert gitinfo.lookup(gitinfo.Repo(fresh, None, False), "HEAD") is None


def test_dirty_files_names_changed_tracked_files_whole(fresh) -> None:
    # The porcelain line of a changed tracked file starts with a space: it used to lose a letter.
    commit(fresh, {"Dockerfile.cuda": "FROM a\n", "b.py": "x\n"})
    (fresh / "Dockerfile.cuda").write_text("FROM b\n")
    (fresh / "new.py").write_text("y\n")
    assert gitinfo.dirty_files(fresh) == ["Dockerfile.cuda", "new.py"]


CREDENTIALS = "holds credentials (user info before @); leave them out: the code is exported from " \
              "this repository, and the URL is only shown, never fetched"


@pytest.mark.parametrize("url", ["https://oauth2:glpat-AbC123@gitlab.com/o/r.git",
                                 "https://ghp_AbC123@github.com/o/r.git",
                                 "ssh://deploy:AbC123@host/o/r.git"])
def test_a_spec_that_writes_credentials_into_its_url_is_refused_unechoed(url: str, launch, monkeypatch) -> None:
    # The spec itself is embedded in the app and shown by --explain: refused, and never echoed.
    monkeypatch.chdir(ROOT)
    for args in (("check", "jobs/ppo.yaml"), ("--dry-run", "--explain", "jobs/ppo.yaml")):
        result = launch(*args, "--set", f"image.git.url={url}")
        assert (result.code, result.out) == (1, "")
        assert result.err.splitlines()[0] == f"--set image.git.url=***: $.image.git.url: {CREDENTIALS}"
        assert "AbC123" not in result.err


@pytest.mark.parametrize("url", ["https://github.com/o/r.git", "ssh://git@github.com/o/r.git",
                                 "git@github.com:o/r.git", "file:///srv/r.git"])
def test_a_url_without_credentials_is_accepted(url: str, launch, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    assert launch("check", "jobs/ppo.yaml", "--set", f"image.git.url={url}") == (0, "", "1 spec ok\n")


QUERY = ("holds a query or fragment (after ? or #); leave it out: the URL is provenance (scheme, "
         "host and path), only shown, never fetched")


@pytest.mark.parametrize("url", ["https://github.com/o/r.git?access_token=opaque-Xy12Zw",
                                 "https://github.com/o/r.git#opaque-Xy12Zw"])
def test_a_spec_that_writes_a_query_into_its_url_is_refused_unechoed(url: str, launch, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    for args in (("check", "jobs/ppo.yaml"), ("--dry-run", "jobs/ppo.yaml")):
        result = launch(*args, "--set", f"image.git.url={url}")
        assert (result.code, result.out) == (1, "")
        assert result.err.splitlines()[0] == f"--set image.git.url=***: $.image.git.url: {QUERY}"
        assert "opaque-Xy12Zw" not in result.err
