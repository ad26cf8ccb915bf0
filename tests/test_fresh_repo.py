"""A new user's repository, end to end, with launcher installed from a wheel as a user gets it.

`pip install launcher` (no torch) runs init, check and dry-run in a fresh git repository, before
and after its first commit; `--local` asks for the runtime in one line; with the `local` extra
installed, the user's own recipe (in their repository, not in launcher) trains with `--local`,
and every file launcher writes lands under that repository's .launch/.

Slow by nature (it installs packages into a new virtualenv); pip's cache keeps reruns short.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCE = shutil.ignore_patterns(".git", ".launch", "build", "dist", "*.egg-info", "__pycache__",
                                    ".venv", ".pytest_cache", ".hypothesis")

RECIPE = '''\
"""A user's recipe: linear regression, in the user's own package."""
from typing import Any

import torch


class Tiny:
    def __init__(self, config: dict[str, Any], seed: int) -> None:
        self.lr = config.get("lr", 0.1)
        self.model = torch.nn.Linear(4, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.lr)
        self.generator = torch.Generator().manual_seed(seed)

    def setup(self, accelerator: Any) -> None:
        self.acc = accelerator
        self.model, self.optimizer = accelerator.prepare(self.model, self.optimizer)

    def train_step(self, step: int) -> dict[str, float]:
        x = torch.randn(32, 4, generator=self.generator)
        loss = torch.nn.functional.mse_loss(self.model(x), x.sum(dim=1, keepdim=True))
        self.optimizer.zero_grad()
        self.acc.backward(loss)
        self.optimizer.step()
        return {"loss": loss.item()}

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
'''
# Beside the module, so that `launch check` validates train.config without importing torch.
RECIPE_SCHEMA = '{"type": "object", "additionalProperties": false, "properties": {"lr": {"type": "number"}}}\n'


def run(*args: str | Path, cwd: Path, venv: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"{done.args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """launcher's wheel, built once from a copy of the source (the checkout stays untouched)."""
    work = tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, work / "src", ignore=NOT_SOURCE)
    ok(subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"),
                       str(work / "src")], capture_output=True, text=True, timeout=600))
    (built,) = (work / "dist").glob("launcher-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A fresh virtualenv with launcher from the wheel, NOT editable, and without its runtime."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    ok(subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=300))
    ok(run(venv / "bin/python", "-m", "pip", "install", "-q", "--no-compile", wheel, cwd=venv, venv=venv))
    return venv


def importable(venv: Path, module: str) -> bool:
    probe = run(venv / "bin/python", "-c", f"import importlib.util as u; print(u.find_spec({module!r}) is not None)",
                cwd=venv, venv=venv)
    return ok(probe).stdout.strip() == "True"


def test_a_new_users_repository_from_init_to_a_local_run(venv: Path, wheel: Path, tmp_path: Path) -> None:
    assert not importable(venv, "torch") and not importable(venv, "accelerate")
    installed = ok(run(venv / "bin/python", "-c", "import launcher; print(launcher.__file__)", cwd=tmp_path, venv=venv))
    assert installed.stdout.startswith(str(venv))  # the wheel's copy, not this checkout

    repo = tmp_path / "myproject"
    (repo / "mypkg").mkdir(parents=True)
    (repo / "mypkg" / "__init__.py").write_text("")
    (repo / "mypkg" / "recipes.py").write_text(RECIPE)
    (repo / "mypkg" / "recipes.Tiny.schema.json").write_text(RECIPE_SCHEMA)
    (repo / "requirements.txt").write_text("numpy\n")
    ok(run("git", "init", "-q", cwd=repo, venv=venv))

    # No commit yet: init, check and dry-run work, and everything goes to the repository's root.
    init = ok(run("launch", "init", "tiny", "--recipe", "mypkg.recipes:Tiny", cwd=repo, venv=venv))
    assert init.stderr.splitlines() == [
        "wrote jobs/tiny.yaml",
        "wrote schemas/job.schema.json (the spec's JSON Schema, for editors)",
        "wrote Dockerfile.cuda (the training image: CUDA, Python, the launcher runtime; your "
        "dependencies from requirements.txt)",
        "added .launch/ to .gitignore",
        "next: launch check jobs/tiny.yaml; launch --dry-run jobs/tiny.yaml; launch jobs/tiny.yaml --local",
    ]
    assert (repo / "jobs" / "tiny.yaml").read_text().startswith(
        "# yaml-language-server: $schema=../schemas/job.schema.json\n")
    assert ok(run("launch", "check", "jobs/tiny.yaml", cwd=repo, venv=venv)).stderr == "1 spec ok\n"
    dry = ok(run("launch", "--dry-run", "jobs/tiny.yaml", cwd=repo, venv=venv))
    assert dry.stderr.splitlines()[0] == (
        "note: image.code is git, but this repository has no commit yet; commit, or pass "
        "--use-local-code (this dry run shows the app with local code)")
    compile(dry.stdout, "app.py", "exec")
    local = run("launch", "jobs/tiny.yaml", "--local", cwd=repo, venv=venv)
    assert (local.returncode, local.stdout, local.stderr) == (
        1, "", "--local: the training runtime is not installed (no torch, accelerate, numpy, "
               "tensorboard, tqdm); install it with: pip install 'launcher[local]'\n")

    ok(run("git", "add", ".", cwd=repo, venv=venv))
    ok(run("git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "start", cwd=repo, venv=venv))
    head = ok(run("git", "rev-parse", "HEAD", cwd=repo, venv=venv)).stdout.strip()
    dry = ok(run("launch", "--dry-run", "jobs/tiny.yaml", cwd=repo, venv=venv))
    assert f"code        git (no origin remote) @ {head}: exported with git archive into .launch/code/ " \
           "when launched, into /root (no pyproject.toml or setup.py to install it with)" in dry.stderr
    assert f"GIT_COMMIT = {head!r}\n" in dry.stdout
    assert not (repo / ".launch").exists()  # a dry run writes nothing

    # The runtime, as the README says: torch first (here, the CPU build), then the extra.
    ok(run(venv / "bin/python", "-m", "pip", "install", "-q", "--no-compile", "torch==2.13.0", cwd=repo, venv=venv))
    ok(run(venv / "bin/python", "-m", "pip", "install", "-q", "--no-compile", f"{wheel}[local]", cwd=repo, venv=venv))
    trained = ok(run("launch", "jobs/tiny.yaml", "--local", "--set", "train.steps=4", "--set", "train.log_every=1",
                     cwd=repo, venv=venv))
    assert "summary: tiny finished" in trained.stderr
    assert "  steps        4 of 4" in trained.stderr
    assert sorted(p.name for p in (repo / ".launch").iterdir()) == ["runs", "volumes"]
    assert (repo / ".launch" / "runs" / "tiny" / "app.py").is_file()
    assert any((repo / ".launch" / "volumes" / "tiny-checkpoints").iterdir())
    assert [p for p in repo.rglob(".launch") if p != repo / ".launch"] == []
    assert ok(run("git", "status", "--porcelain", cwd=repo, venv=venv)).stdout == ""  # .launch/ ignored
