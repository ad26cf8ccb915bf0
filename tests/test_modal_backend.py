"""The Modal backend up to the network boundary: credentials, refusals, submission, detach.

Modal's servers cannot be reached from here; `submit` is replaced where a server would answer.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import modal.exception
import pytest

from launcher.backends import modal as backend

ROOT = Path(__file__).resolve().parent.parent
NO_CREDENTIALS = ("no Modal credentials: run `modal setup` (or set MODAL_TOKEN_ID and "
                  "MODAL_TOKEN_SECRET); `launch JOB --local` runs without an account\n")


@pytest.fixture
def no_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(tmp_path / "absent.toml"))
    monkeypatch.setattr("modal.config.config", modal.config.Config())
    # Modal reads its config file once, when first imported, whatever test that was in.
    monkeypatch.setattr("modal.config._user_config", {})


@pytest.fixture
def fake_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "has_credentials", lambda: True)
    monkeypatch.setattr("launcher.commands.modal_run.has_credentials", lambda: True)


def test_without_credentials_one_line_and_exit_1(launch, no_account, user_repo) -> None:
    result = launch(str(user_repo / "jobs/ppo.yaml"), "--use-local-code")
    assert (result.code, result.out, result.err) == (1, "", NO_CREDENTIALS)


def test_without_credentials_in_a_fresh_process(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MODAL_CONFIG_PATH": str(tmp_path / "none.toml")}
    import sys
    proc = subprocess.run([sys.executable, "-m", "launcher.cli", "jobs/ppo.yaml", "--use-local-code"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", NO_CREDENTIALS)


def test_an_unreachable_server_is_one_line(launch, fake_account, monkeypatch, user_repo) -> None:
    class App:
        def deploy(self, name: str) -> None:
            raise modal.exception.ConnectionError("Could not connect to the Modal server.")

    monkeypatch.setattr(backend, "import_app", lambda path: type("M", (), {"app": App()}))
    result = launch(str(user_repo / "jobs/ppo.yaml"), "--use-local-code")
    assert result.code == 1
    assert result.err.splitlines()[-1] == ("cannot reach Modal: ConnectionError: Could not connect to "
                                           "the Modal server.; check the network, or use --local")
    assert "Traceback" not in result.err


def test_an_auth_error_from_the_server_says_how_to_authenticate(launch, fake_account, monkeypatch, user_repo) -> None:
    class App:
        def deploy(self, name: str) -> None:
            raise modal.exception.AuthError("Token invalid")

    monkeypatch.setattr(backend, "import_app", lambda path: type("M", (), {"app": App()}))
    result = launch(str(user_repo / "jobs/ppo.yaml"), "--use-local-code")
    assert (result.code, result.err.splitlines()[-1] + "\n") == (1, NO_CREDENTIALS)


def test_detach_prints_the_call_and_how_to_follow_it(launch, fake_account, monkeypatch, user_repo) -> None:
    seen = {}

    def submit(app_path: Path, app_name: str, rerun: tuple[str, ...] = ()) -> backend.Submission:
        seen["app"] = app_path.read_text()
        return backend.Submission(app_name, "fc-01TEST")

    monkeypatch.setattr(backend, "submit", submit)
    result = launch(str(user_repo / "jobs/ppo.yaml"), "--use-local-code", "--detach")
    assert result.code == 0
    assert result.out == "fc-01TEST\n"
    assert result.err.splitlines()[-4:] == [
        "spawned fc-01TEST on app ppo-cartpole",
        "follow logs:  modal app logs ppo-cartpole",
        "stop the job: launch stop fc-01TEST",
        "get result:   python -c \"import modal; print(modal.FunctionCall.from_id('fc-01TEST').get())\"",
    ]
    assert "image = image.add_local_dir(CODE, codeship.CODE_DIR, copy=True, ignore=codeship.ship_filter(CODE, 'local'))" \
        in seen["app"]
    assert (user_repo / ".launch/apps/ppo-cartpole.py").read_text() == seen["app"]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    """A user's repository with an origin remote, a Dockerfile and a committed spec."""
    repo = tmp_path / "repo"
    (repo / "jobs").mkdir(parents=True)
    (repo / "Dockerfile.cuda").write_text("FROM python:3.11\n")
    (repo / "jobs/ppo.yaml").write_text((ROOT / "jobs/ppo.yaml").read_text())
    _git(repo, "init", "-q")
    _git(repo, "remote", "add", "origin", "https://example.com/team/repo.git")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "init")
    return repo


def test_git_code_refuses_uncommitted_changes(launch, fake_account, user_repo) -> None:
    (user_repo / "train_utils.py").write_text("x = 1\n")
    result = launch(str(user_repo / "jobs/ppo.yaml"))
    head = _git(user_repo, "rev-parse", "HEAD").strip()
    assert result.code == 1
    assert result.err == (f"{user_repo / 'jobs/ppo.yaml'}: image.code is git, which ships commit "
                          f"{head[:12]}, but these changes are not committed and the run would miss "
                          "them: train_utils.py; commit them, or pass --use-local-code\n")


@pytest.fixture
def submitted(fake_account, monkeypatch) -> dict[str, str]:
    """What `launch --detach` would deploy: the app's text, as `submit` read it."""
    apps: dict[str, str] = {}

    def submit(path: Path, name: str, rerun: tuple[str, ...] = ()) -> backend.Submission:
        apps["app"] = path.read_text()
        return backend.Submission(name, "fc-1")

    monkeypatch.setattr(backend, "submit", submit)
    return apps


def app_value(app: str, name: str) -> object:
    """The literal bound to `name` at the top level of the app."""
    for node in ast.parse(app).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == [name]:
            return ast.literal_eval(node.value)
    raise AssertionError(name)


def image_steps(app: str) -> list[str]:
    return [line for line in app.splitlines() if line.startswith("image = image.")]


# The commit's tree at /opt/project, whatever it holds (packaging metadata or not): one layout.
GIT_STEP = "image = image.add_local_dir(CODE, codeship.CODE_DIR, copy=True, ignore=codeship.ship_filter(CODE, 'git'))"


def code_steps(app: str) -> list[str]:
    return [step for step in image_steps(app) if "CODE" in step and "PYTHONPATH" not in step]


def commit_all(repo: Path) -> str:
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "more")
    return _git(repo, "rev-parse", "HEAD").strip()


def test_a_token_in_the_origins_query_reaches_neither_the_plan_nor_the_app(launch, user_repo) -> None:
    # CI remotes may carry an opaque token in the query string: provenance is scheme, host, path.
    _git(user_repo, "remote", "set-url", "origin",
         "https://example.com/team/repo.git?access_token=opaque-Xy12Zw#frag")
    result = launch("--dry-run", str(user_repo / "jobs/ppo.yaml"))
    assert result.code == 0, result.err
    assert "opaque-Xy12Zw" not in result.out + result.err
    assert app_value(result.out, "GIT_URL") == "https://example.com/team/repo.git"
    assert "code        git https://example.com/team/repo.git @ " in result.err


def test_git_code_exports_the_head_commit_for_the_image(launch, submitted, user_repo) -> None:
    (user_repo / "ignored.txt").write_text("not committed\n")
    (user_repo / ".gitignore").write_text("ignored.txt\n")
    head = commit_all(user_repo)
    result = launch(str(user_repo / "jobs/ppo.yaml"), "--detach")
    assert result.code == 0, result.err
    assert (f"code        git https://example.com/team/repo.git @ {head}: exported with git archive "
            "into .launch/code/ when launched, into /opt/project, the working directory") in result.err.splitlines()
    app = submitted["app"]
    assert (app_value(app, "GIT_URL"), app_value(app, "GIT_COMMIT")) == ("https://example.com/team/repo.git", head)
    assert code_steps(app) == [GIT_STEP]
    assert 'CODE = _repo_root() / ".launch" / "code" / GIT_COMMIT' in app
    exported = user_repo / ".launch" / "code" / head
    files = sorted(str(p.relative_to(exported)) for p in exported.rglob("*") if p.is_file())
    assert files == sorted(_git(user_repo, "ls-tree", "-r", "--name-only", "HEAD").split())
    assert (exported / "ignored.txt").exists() is False
    assert [p.name for p in (user_repo / ".launch" / "code").iterdir()] == [head]  # no leftovers
    assert (user_repo / ".launch" / "apps" / "ppo-cartpole.py").read_text() == app


@pytest.mark.parametrize("pyproject", ['[project]\nname = "team"\nversion = "1"\ndependencies = ["numpy"]\n',
                                       "[tool.ruff]\nline-length = 100\n"])
def test_a_commit_goes_into_the_one_layout_whatever_it_holds(pyproject, launch, submitted, user_repo) -> None:
    """Not pip-installed: the tree itself is the working directory and on PYTHONPATH, so paths
    relative to the repository open as they do there (the Dockerfile installs dependencies)."""
    (user_repo / "pyproject.toml").write_text(pyproject)
    commit_all(user_repo)
    assert launch(str(user_repo / "jobs/ppo.yaml"), "--detach").code == 0
    assert code_steps(submitted["app"]) == [GIT_STEP]
    assert "uv pip install --system /opt/code" not in submitted["app"]


@pytest.mark.parametrize("remote, shown", [
    ("git@github.com:org/repo.git", "github.com:org/repo.git"),
    ("ssh://git@github.com/org/repo.git", "ssh://github.com/org/repo.git"),
    ("ssh://git@github.com:2222/org/repo.git", "ssh://github.com:2222/org/repo.git"),
    ("https://user:s3cret-token@gitlab.example.com/org/repo.git", "https://gitlab.example.com/org/repo.git"),
    ("https://oauth2:glpat-AbC123xYz@gitlab.com/org/repo.git", "https://gitlab.com/org/repo.git"),
    ("https://gitlab-ci-token:p@ss@word@gitlab.com/org/repo.git", "https://gitlab.com/org/repo.git"),
])
def test_any_remote_works_and_no_credentials_are_shown(remote: str, shown: str, launch, submitted,
                                                      user_repo) -> None:
    _git(user_repo, "remote", "set-url", "origin", remote)
    head = _git(user_repo, "rev-parse", "HEAD").strip()
    result = launch(str(user_repo / "jobs/ppo.yaml"), "--detach")
    assert result.code == 0, result.err
    app = submitted["app"]
    assert app_value(app, "GIT_URL") == shown
    assert f"code        git {shown} @ {head}: " in result.err
    assert code_steps(app) == [GIT_STEP]  # the image never fetches from the remote
    for secret in ("s3cret", "glpat", "ss@word", "token:", "oauth2", "git@"):
        assert secret not in app + result.out + result.err


def test_a_local_path_remote_works(launch, submitted, user_repo, tmp_path) -> None:
    bare = tmp_path / "bare.git"
    _git(tmp_path, "clone", "-q", "--bare", str(user_repo), str(bare))
    _git(user_repo, "remote", "set-url", "origin", str(bare))
    assert launch(str(user_repo / "jobs/ppo.yaml"), "--detach").code == 0
    assert app_value(submitted["app"], "GIT_URL") == str(bare)


def test_uncommitted_changes_are_refused_before_credentials_are_asked_for(launch, no_account, user_repo) -> None:
    (user_repo / "train_utils.py").write_text("x = 1\n")
    result = launch(str(user_repo / "jobs/ppo.yaml"))
    assert result.code == 1
    assert "these changes are not committed and the run would miss them: train_utils.py" in result.err
    assert not (user_repo / ".launch").exists()


def test_git_code_refuses_a_changed_tracked_file(launch, fake_account, user_repo) -> None:
    (user_repo / "Dockerfile.cuda").write_text("FROM python:3.12\n")
    result = launch(str(user_repo / "jobs/ppo.yaml"))
    head = _git(user_repo, "rev-parse", "HEAD").strip()
    assert result.err == (f"{user_repo / 'jobs/ppo.yaml'}: image.code is git, which ships commit "
                          f"{head[:12]}, but these changes are not committed and the run would miss "
                          "them: Dockerfile.cuda; commit them, or pass --use-local-code\n")
    assert not (user_repo / ".launch" / "code").exists()


def test_git_code_without_an_origin_still_ships_the_commit(launch, submitted, user_repo) -> None:
    _git(user_repo, "remote", "remove", "origin")
    head = _git(user_repo, "rev-parse", "HEAD").strip()
    result = launch(str(user_repo / "jobs/ppo.yaml"), "--detach")
    assert result.code == 0, result.err
    assert f"code        git (no origin remote) @ {head}: " in result.err
    assert app_value(submitted["app"], "GIT_URL") is None
    assert (user_repo / ".launch" / "code" / head).is_dir()


def test_git_code_before_the_first_commit_is_refused(launch, fake_account, tmp_path) -> None:
    repo = tmp_path / "fresh"
    (repo / "jobs").mkdir(parents=True)
    (repo / "Dockerfile.cuda").write_text("FROM python:3.11\n")
    (repo / "jobs/ppo.yaml").write_text((ROOT / "jobs/ppo.yaml").read_text())
    _git(repo, "init", "-q")
    result = launch(str(repo / "jobs/ppo.yaml"))
    assert (result.code, result.err) == (1, f"{repo / 'jobs/ppo.yaml'}: image.code is git, but this "
                                            "repository has no commit yet; commit, or pass --use-local-code\n")


def test_a_pinned_ref_this_repository_lacks_is_refused(launch, fake_account, user_repo) -> None:
    result = launch(str(user_repo / "jobs/ppo.yaml"), "--set", "image.git.ref=v9")
    assert (result.code, result.err) == (1, f"{user_repo / 'jobs/ppo.yaml'}: image.code is git, but "
                                            "image.git.ref 'v9' names no commit in this repository, "
                                            "which the code is exported from; fetch it, or pass "
                                            "--use-local-code\n")


def test_a_pinned_tag_is_resolved_to_its_commit(launch, submitted, user_repo) -> None:
    head = _git(user_repo, "rev-parse", "HEAD").strip()
    _git(user_repo, "tag", "-a", "v1", "-m", "v1")  # an annotated tag: its own object, not the commit
    (user_repo / "later.py").write_text("x = 2\n")
    commit_all(user_repo)
    assert launch(str(user_repo / "jobs/ppo.yaml"), "--set", "image.git.ref=v1", "--detach").code == 0
    assert app_value(submitted["app"], "GIT_COMMIT") == head
    assert not (user_repo / ".launch" / "code" / head / "later.py").exists()
