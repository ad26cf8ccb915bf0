"""A new user's repository, end to end, with launcher installed as docs/in-your-repo.md says: from
a copy of its source, into a fresh virtual environment.

The user's package reads a data file by a path relative to the repository (`data/train.csv`),
the repository has an SSH origin. Without the runtime, init, check and dry-run work before and
after the first commit, and `--local` prints the install command for this installation; with it,
the recipe trains with `--local`, and `--local --shipped` (the commit the image gets) fails as
Modal would while the data file is untracked, and trains once it is committed. The image the app
describes runs this installation's launcher, and the scaffold Dockerfile builds from what the
repository holds.

Slow by nature (it installs packages into a new virtualenv); pip's cache keeps reruns short.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_scaffold import problems

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCE = shutil.ignore_patterns(".git", ".launch", "build", "dist", "*.egg-info", "__pycache__",
                                    ".venv", ".pytest_cache", ".hypothesis")

RECIPE = '''\
"""A user's recipe: linear regression on a CSV the repository holds, read by a relative path."""
import csv
from typing import Any

import torch


class Tiny:
    def __init__(self, config: dict[str, Any], seed: int) -> None:
        with open("data/train.csv", newline="") as handle:
            rows = [[float(v) for v in row] for row in csv.reader(handle)]
        self.data = torch.tensor(rows)
        self.model = torch.nn.Linear(self.data.shape[1] - 1, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config.get("lr", 0.01))

    def setup(self, accelerator: Any) -> None:
        self.acc = accelerator
        self.model, self.optimizer = accelerator.prepare(self.model, self.optimizer)

    def train_step(self, step: int) -> dict[str, float]:
        x, y = self.data[:, :-1], self.data[:, -1:]
        loss = torch.nn.functional.mse_loss(self.model(x), y)
        self.optimizer.zero_grad()
        self.acc.backward(loss)
        self.optimizer.step()
        return {"loss": loss.item()}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
'''
# Beside the module, so that `launch check` validates train.config without importing torch.
RECIPE_SCHEMA = '{"type": "object", "additionalProperties": false, "properties": {"lr": {"type": "number"}}}\n'
PYPROJECT = '[project]\nname = "mypkg"\nversion = "0.1"\nrequires-python = ">=3.11"\ndependencies = []\n'
ORIGIN = "git@github.com:me/myproject.git"
MISSING_DATA = ("mypkg/recipes.py:10: FileNotFoundError: [Errno 2] No such file or directory: "
                "'data/train.csv' (in stage 1, before the first update completed: not retried, a "
                "retry would fail the same way)")


def run(*args: str | Path, cwd: Path, venv: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    # LAUNCH_LOCAL_DIR too: the new user's repository is the test's own, and its .launch/ is checked.
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "LAUNCH_LOCAL_DIR")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"{done.args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of launcher's source, as a user's clone (the checkout stays untouched)."""
    clone = tmp_path_factory.mktemp("src") / "launcher"
    shutil.copytree(ROOT, clone, ignore=NOT_SOURCE)
    return clone


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, source: Path) -> Path:
    """A fresh virtualenv with `pip install "$LAUNCHER"`: NOT editable, without its runtime."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    ok(subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=300))
    ok(run(venv / "bin/python", "-m", "pip", "install", "-q", "--no-compile", source, cwd=venv, venv=venv))
    return venv


def importable(venv: Path, module: str) -> bool:
    probe = run(venv / "bin/python", "-c", f"import importlib.util as u; print(u.find_spec({module!r}) is not None)",
                cwd=venv, venv=venv)
    return ok(probe).stdout.strip() == "True"


def commit(repo: Path, venv: Path, *paths: str) -> str:
    ok(run("git", "add", *paths, cwd=repo, venv=venv))
    ok(run("git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "work", cwd=repo, venv=venv))
    return ok(run("git", "rev-parse", "HEAD", cwd=repo, venv=venv)).stdout.strip()


# What the image gets, read from the app's own image in the user's environment (tests/imagesteps.py).
IMAGE = """
import importlib.util, json, sys
sys.path.insert(0, sys.argv[2])
from imagesteps import layers
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)
steps = layers(app.image)
import launcher
print(json.dumps({"version": app.LAUNCHER_VERSION, "installed": launcher.__version__,
                  "package": str(steps[2].files["/opt/launcher/launcher/__init__.py"]),
                  "install": steps[1].commands[-1], "code": sorted(steps[5].files),
                  "last": steps[-1].commands[-1]}))
"""


def test_a_new_users_repository_from_init_to_the_shipped_rehearsal(venv: Path, source: Path, tmp_path: Path) -> None:
    assert not importable(venv, "torch") and not importable(venv, "accelerate")
    installed = ok(run(venv / "bin/python", "-c", "import launcher; print(launcher.__file__)", cwd=tmp_path, venv=venv))
    assert installed.stdout.startswith(str(venv))  # the installed copy, not a checkout

    repo = tmp_path / "myproject"
    (repo / "mypkg").mkdir(parents=True)
    (repo / "data").mkdir()
    (repo / "mypkg" / "__init__.py").write_text("")
    (repo / "mypkg" / "recipes.py").write_text(RECIPE)
    (repo / "mypkg" / "recipes.Tiny.schema.json").write_text(RECIPE_SCHEMA)
    (repo / "data" / "train.csv").write_text("1,2,3\n2,3,5\n3,4,7\n")
    (repo / "pyproject.toml").write_text(PYPROJECT)
    ok(run("git", "init", "-q", cwd=repo, venv=venv))
    ok(run("git", "remote", "add", "origin", ORIGIN, cwd=repo, venv=venv))

    # No commit yet: init, check and dry-run work, and everything goes to the repository's root.
    init = ok(run("launch", "init", "tiny", "--recipe", "mypkg.recipes:Tiny", cwd=repo, venv=venv))
    assert init.stderr.splitlines() == [
        "wrote jobs/tiny.yaml",
        "wrote schemas/job.schema.json (the spec's JSON Schema, for editors)",
        "wrote Dockerfile.cuda (the training image: CUDA, Python, uv, the runtime's dependencies; your "
        "dependencies from pyproject.toml)",
        "added .launch/ to .gitignore",
        "next: launch check jobs/tiny.yaml; launch --dry-run jobs/tiny.yaml; launch jobs/tiny.yaml --local",
    ]
    assert problems((repo / "Dockerfile.cuda").read_text(), repo) == []  # it builds from what the repo holds
    assert ok(run("launch", "check", "jobs/tiny.yaml", cwd=repo, venv=venv)).stderr == "1 spec ok\n"
    dry = ok(run("launch", "--dry-run", "jobs/tiny.yaml", cwd=repo, venv=venv))
    assert dry.stderr.splitlines()[0] == (
        "note: image.code is git, but this repository has no commit yet; commit, or pass "
        "--use-local-code (this dry run shows the app with local code)")
    compile(dry.stdout, "app.py", "exec")
    local = run("launch", "jobs/tiny.yaml", "--local", cwd=repo, venv=venv)
    assert (local.returncode, local.stdout, local.stderr) == (
        1, "", "--local: the training runtime is not installed (no torch, accelerate, numpy, "
               f"tensorboard, tqdm); install it with: pip install '{source}[local]'\n")

    # The first commit leaves the data file out, as a user who forgot it would.
    head = commit(repo, venv, "mypkg", "jobs", "schemas", "Dockerfile.cuda", ".gitignore", "pyproject.toml")
    dry = ok(run("launch", "--dry-run", "jobs/tiny.yaml", cwd=repo, venv=venv))
    assert (f"code        git github.com:me/myproject.git @ {head}: exported with git archive into "
            ".launch/code/ when launched, into /opt/project, the working directory") in dry.stderr
    assert "  ships     8 files, " in dry.stderr
    assert not (repo / ".launch").exists()  # a dry run writes nothing

    # The runtime, as the docs say: torch first (here, the CPU build), then the extra.
    ok(run(venv / "bin/python", "-m", "pip", "install", "-q", "--no-compile", "torch==2.13.0", cwd=repo, venv=venv))
    ok(run(venv / "bin/python", "-m", "pip", "install", "-q", "--no-compile", f"{source}[local]", cwd=repo, venv=venv))
    steps = ("--set", "train.steps=4", "--set", "train.log_every=1")
    trained = ok(run("launch", "jobs/tiny.yaml", "--local", *steps, cwd=repo, venv=venv))
    assert "summary: tiny finished" in trained.stderr  # the working tree has the data

    # The commit does not: the shipped rehearsal fails as the container would, ...
    shipped = run("launch", "jobs/tiny.yaml", "--local", "--shipped", "--fresh", *steps, cwd=repo, venv=venv)
    assert shipped.returncode == 1, shipped.stderr
    assert f"  error        {MISSING_DATA}" in shipped.stderr.splitlines()
    assert list((repo / ".launch" / "shipped").iterdir()) == []  # each run's tree goes with it
    # ... and passes once the file is committed, from the tree the image gets.
    head = commit(repo, venv, "data")
    shipped = ok(run("launch", "jobs/tiny.yaml", "--local", "--shipped", "--fresh", *steps, cwd=repo, venv=venv))
    assert shipped.stderr.splitlines()[0].startswith(f"[launch] --shipped: commit {head[:12]} (9 files, ")
    assert "summary: tiny finished" in shipped.stderr and "  updates      4 of 4" in shipped.stderr

    # The image runs the launcher installed here, its runtime pinned to what just trained.
    app = repo / "app.py"
    ok(run("launch", "--dry-run", "jobs/tiny.yaml", "--out", app, cwd=repo, venv=venv))
    image = ok(run(venv / "bin/python", "-c", IMAGE, app, ROOT / "tests", cwd=repo, venv=venv))
    facts = json.loads(image.stdout)
    assert facts["version"] == facts["installed"]
    assert facts["package"].startswith(str(venv)) and "site-packages" in facts["package"]
    assert "torch==2.13.0" in facts["install"] and "launcher" not in facts["install"]
    assert "/opt/project/data/train.csv" in facts["code"]
    assert facts["last"] == "RUN python -c 'import launcher.runtime.train.session, mypkg.recipes'"
    assert sorted(p.name for p in (repo / ".launch").iterdir()) == ["code", "runs", "shipped", "volumes"]
    assert ok(run("git", "status", "--porcelain", cwd=repo, venv=venv)).stdout == "?? app.py\n"
