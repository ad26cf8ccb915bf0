"""The Modal backend up to the network boundary: credentials, refusals, submission, detach.

Modal's servers cannot be reached from here; `submit` is replaced where a server would answer.
"""

from __future__ import annotations

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


@pytest.fixture
def fake_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "has_credentials", lambda: True)
    monkeypatch.setattr("launcher.commands.modal_run.has_credentials", lambda: True)


def test_without_credentials_one_line_and_exit_1(launch, no_account) -> None:
    result = launch(str(ROOT / "jobs/ppo.yaml"), "--use-local-code")
    assert (result.code, result.out, result.err) == (1, "", NO_CREDENTIALS)


def test_without_credentials_in_a_fresh_process(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MODAL_CONFIG_PATH": str(tmp_path / "none.toml")}
    import sys
    proc = subprocess.run([sys.executable, "-m", "launcher.cli", "jobs/ppo.yaml"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", NO_CREDENTIALS)


def test_an_unreachable_server_is_one_line(launch, fake_account, monkeypatch) -> None:
    class App:
        def deploy(self, name: str) -> None:
            raise modal.exception.ConnectionError("Could not connect to the Modal server.")

    monkeypatch.setattr(backend, "import_app", lambda path: type("M", (), {"app": App()}))
    result = launch(str(ROOT / "jobs/ppo.yaml"), "--use-local-code")
    assert result.code == 1
    assert result.err.splitlines()[-1] == ("cannot reach Modal: ConnectionError: Could not connect to "
                                           "the Modal server.; check the network, or use --local")
    assert "Traceback" not in result.err


def test_an_auth_error_from_the_server_says_how_to_authenticate(launch, fake_account, monkeypatch) -> None:
    class App:
        def deploy(self, name: str) -> None:
            raise modal.exception.AuthError("Token invalid")

    monkeypatch.setattr(backend, "import_app", lambda path: type("M", (), {"app": App()}))
    result = launch(str(ROOT / "jobs/ppo.yaml"), "--use-local-code")
    assert (result.code, result.err.splitlines()[-1] + "\n") == (1, NO_CREDENTIALS)


def test_detach_prints_the_call_and_how_to_follow_it(launch, fake_account, monkeypatch) -> None:
    seen = {}

    def submit(app_path: Path, app_name: str) -> backend.Submission:
        seen["app"] = app_path.read_text()
        return backend.Submission(app_name, "fc-01TEST")

    monkeypatch.setattr(backend, "submit", submit)
    result = launch(str(ROOT / "jobs/ppo.yaml"), "--use-local-code", "--detach")
    assert result.code == 0
    assert result.out == "fc-01TEST\n"
    assert result.err.splitlines()[-4:] == [
        "spawned fc-01TEST on app ppo-cartpole",
        "follow logs:  modal app logs ppo-cartpole",
        "stop the job: modal app stop ppo-cartpole",
        "get result:   python -c \"import modal; print(modal.FunctionCall.from_id('fc-01TEST').get())\"",
    ]
    assert "image.add_local_python_source('launcher')" in seen["app"]
    assert (ROOT / ".launch/apps/ppo-cartpole.py").read_text() == seen["app"]


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
    assert result.err == (f"{user_repo / 'jobs/ppo.yaml'}: image.code is git, which installs commit "
                          f"{head[:12]}, but these changes are not committed and the run would miss "
                          "them: train_utils.py; commit them, or pass --use-local-code\n")


def test_git_code_pins_the_head_commit(launch, fake_account, user_repo, monkeypatch) -> None:
    apps = {}
    monkeypatch.setattr(backend, "submit", lambda path, name: apps.setdefault("app", path.read_text())
                        and backend.Submission(name, "fc-1"))
    result = launch(str(user_repo / "jobs/ppo.yaml"), "--detach")
    head = _git(user_repo, "rev-parse", "HEAD").strip()
    assert result.code == 0, result.err
    assert f"code        git https://example.com/team/repo.git @ {head}" in result.err
    assert f"GIT_COMMIT = '{head}'" in apps["app"]
    assert "GIT_URL = 'https://example.com/team/repo.git'" in apps["app"]


def test_git_code_without_an_origin_is_refused(launch, fake_account, user_repo) -> None:
    _git(user_repo, "remote", "remove", "origin")
    result = launch(str(user_repo / "jobs/ppo.yaml"))
    assert result.code == 1
    assert result.err == (f"{user_repo / 'jobs/ppo.yaml'}: image.code is git, but this repository has "
                          "no origin remote; set image.git.url/ref, or pass --use-local-code\n")
