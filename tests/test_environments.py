"""Modal Environments: dev, staging and production as `environment:` in a spec (or `--env`),
applied to the deploy, the spawned call, the volume and the secrets, and shown in the plan.

Modal's servers cannot be reached from here: the SDK is replaced at its boundary (App.deploy,
Cls.from_name, Function.from_name), and the signatures the app and the backend rely on are
checked against the installed modal.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import modal
import pytest

from launcher.backends import modal as backend
from launcher.codesource import CodeSource
from launcher.load import load_spec
from launcher.render import render

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("function", [modal.App.deploy, modal.Volume.from_name, modal.Secret.from_name,
                                      modal.Cls.from_name, modal.Function.from_name])
def test_the_installed_modal_takes_an_environment_name(function: Any) -> None:
    assert "environment_name" in inspect.signature(function).parameters


def spec_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "job.yaml"
    path.write_text("version: 1\nname: job\nsecrets: [wandb, hf]\n"
                    "train: {recipe: 'launcher.recipes.ppo:PPO'}\n" + extra)
    return path


def test_the_app_looks_its_volume_and_secrets_up_in_the_environment(tmp_path) -> None:
    spec = load_spec(spec_file(tmp_path, "environment: staging\n")).spec
    app = render(spec, "job.yaml", CodeSource("local"))
    assert "ENVIRONMENT = 'staging'\n" in app
    assert ("volume = modal.Volume.from_name('launcher-checkpoints', create_if_missing=True, "
            "version=2, environment_name=ENVIRONMENT)\n") in app
    assert ("    secrets=[modal.Secret.from_name('wandb', environment_name=ENVIRONMENT), "
            "modal.Secret.from_name('hf', environment_name=ENVIRONMENT)],\n") in app
    # Without one, the app is what it was, and so is its spec hash.
    spec = load_spec(spec_file(tmp_path)).spec
    app = render(spec, "job.yaml", CodeSource("local"))
    assert "ENVIRONMENT" not in app and "environment_name" not in app
    assert "environment" not in spec.to_dict()


def test_a_bad_environment_name_is_refused_where_it_is_written(launch, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec_file(tmp_path, "environment: 'my env'\n")
    assert launch("check", "job.yaml") == (
        1, "", "job.yaml:5:14: $.environment: 'my env' is not a valid environment name: use "
               "letters, digits, '_' and '-' (at most 64, starting with a letter or digit)\n"
               "1 spec checked, 1 with problems\n")
    spec_file(tmp_path, "environment: en-1234\n")
    assert launch("check", "job.yaml").err.splitlines()[0] == (
        "job.yaml:5:14: $.environment: 'en-1234' starts with 'en-', which Modal keeps for "
        "Environment ids: choose another name")


def test_env_on_the_command_line_overrides_the_spec_and_shows_in_the_plan(launch, tmp_path,
                                                                          monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Dockerfile.cuda").write_text("FROM python:3.11\n")
    spec_file(tmp_path, "environment: dev\n")
    result = launch("--dry-run", "job.yaml", "--env", "production", "--use-local-code")
    assert result.code == 0, result.err
    assert "ENVIRONMENT = 'production'\n" in result.out
    assert ("modal env   production: the app is deployed and its call spawned there, and volume "
            "launcher-checkpoints and the secrets are looked up there") in result.err.splitlines()
    bad = launch("--dry-run", "job.yaml", "--env", "no/such")
    assert bad.code == 1
    assert bad.err.startswith("--set environment=\"no/such\": $.environment: 'no/such' is not a valid ")


class FakeSDK:
    """Modal's client at the boundary launch talks to: what was called, with which arguments."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, environment: str | None,
                 pipeline: bool = False) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        call = SimpleNamespace(object_id="fc-ENV")
        spawn = lambda **kw: self.record("spawn", (), kw) or call  # noqa: E731
        app = SimpleNamespace(deploy=lambda **kw: self.record("deploy", (), kw))
        module = SimpleNamespace(app=app, **({"ENVIRONMENT": environment} if environment else {}),
                                 **({"pipeline": object()} if pipeline else {}))
        monkeypatch.setattr(backend, "import_app", lambda path: module)
        monkeypatch.setattr(modal.Cls, "from_name", lambda *a, **kw: self.record("Cls.from_name", a, kw)
                            or (lambda: SimpleNamespace(train=SimpleNamespace(spawn=spawn))))
        monkeypatch.setattr(modal.Function, "from_name", lambda *a, **kw: self.record(
            "Function.from_name", a, kw) or SimpleNamespace(spawn=spawn))
        monkeypatch.setattr(modal, "enable_output", lambda: _Nothing())

    def record(self, what: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.calls.append((what, args, kwargs))


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_deploy_and_spawn_happen_in_the_app_s_environment(monkeypatch, tmp_path) -> None:
    sdk = FakeSDK(monkeypatch, "staging")
    sub = backend.submit(tmp_path / "app.py", "job")
    assert sdk.calls == [
        ("deploy", (), {"name": "job", "environment_name": "staging"}),
        ("Cls.from_name", ("job", "Trainer"), {"environment_name": "staging"}),
        ("spawn", (), {"resume": True, "steps": 0}),
    ]
    assert sub == backend.Submission("job", "fc-ENV", "staging")
    assert sub.follow_commands()[:2] == ["modal app logs job --env staging",
                                         "launch stop fc-ENV --env staging"]
    # Without one, Modal's active environment (the profile's, or MODAL_ENVIRONMENT) is used.
    sdk = FakeSDK(monkeypatch, None)
    sub = backend.submit(tmp_path / "app.py", "job")
    assert sdk.calls[:2] == [("deploy", (), {"name": "job"}), ("Cls.from_name", ("job", "Trainer"), {})]
    assert sub.follow_commands()[0] == "modal app logs job"


def test_a_pipeline_s_driver_is_spawned_in_the_environment(monkeypatch, tmp_path) -> None:
    sdk = FakeSDK(monkeypatch, "production", pipeline=True)
    backend.submit(tmp_path / "app.py", "job", ("prepare",))
    assert sdk.calls[1:] == [("Function.from_name", ("job", "pipeline"), {"environment_name": "production"}),
                             ("spawn", (), {"rerun": ["prepare"]})]


@pytest.mark.parametrize("overlay, environment, code, min_containers", [
    ("ppo-dev.yaml", "dev", "local", 0),
    ("ppo-staging.yaml", "staging", "git", 0),
    ("ppo-production.yaml", "production", "git", 1),
])
def test_the_example_overlays_map_the_seed_s_pattern_onto_environments(
        overlay: str, environment: str, code: str, min_containers: int) -> None:
    spec = load_spec(ROOT / "jobs" / overlay).spec
    base = load_spec(ROOT / "jobs" / "ppo.yaml").spec
    assert (spec.environment, spec.image.code, spec.keep_warm.min_containers) == (
        environment, code, min_containers)
    assert (spec.name, spec.train, spec.compute) == (base.name, base.train, base.compute)
