"""Every mistake at once, from any folder: one round of `launch check` names them all, with
the class or function meant; a misspelt command is named; a recipe found from the repository's
root wherever launch runs; a spec outside the repository told the truth."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

RECIPE = '''\
class MLPRecipe:
    config_schema = {"type": "object", "additionalProperties": False,
                     "properties": {"hidden": {"type": "integer", "default": 8}}}


def prepare(ctx):
    return {}
'''


def user_repo(folder: Path, package: str, recipe: str = RECIPE) -> Path:
    """A git repository with the user's package `package` (its recipe module) at its root."""
    (folder / package).mkdir(parents=True)
    (folder / package / "__init__.py").write_text("")
    (folder / package / "recipe.py").write_text(recipe)
    (folder / "jobs").mkdir()
    (folder / "sub").mkdir()
    (folder / "Dockerfile.cuda").write_text("FROM python:3.11\n")
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    return folder


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def isolated_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """sys.path as it is, restored after the test (launch adds the repository's root to it)."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def test_schema_errors_and_every_reference_in_one_round(launch, tmp_path, monkeypatch,
                                                         isolated_path) -> None:
    repo = user_repo(tmp_path / "repo", "mlp_once")
    write(repo / "jobs" / "mlp.yaml", """\
        version: 1
        name: mlp
        compute: {gpu: H10, gpu_count: 12}
        retries: {max_retry: 2}
        train: {recipe: 'mlp_once.recipe:MlpRecipe'}
        stages:
          prepare: {run: 'mlp_once.recipe:Prepare'}
        """)
    monkeypatch.chdir(repo)
    result = launch("check", "jobs/mlp.yaml")
    assert (result.code, result.out) == (1, "")
    assert result.err.splitlines() == [
        "jobs/mlp.yaml:3:16: $.compute.gpu: 'H10' is not one of ['T4', 'L4', 'A10', 'L40S', "
        "'A100', 'A100-40GB', 'A100-80GB', 'RTX-PRO-6000', 'H100', 'H100!', 'H200', 'B200', "
        "'B200+']; did you mean 'H100'?",
        "jobs/mlp.yaml:3:32: $.compute.gpu_count: 12 is greater than the maximum of 8",
        "jobs/mlp.yaml:4:11: $.retries: unknown key 'max_retry'; did you mean 'max_retries'?",
        "jobs/mlp.yaml:5:17: $.train.recipe: 'mlp_once.recipe' has no 'MlpRecipe'; "
        "did you mean 'MLPRecipe'?",
        "jobs/mlp.yaml:7:18: $.stages.prepare.run: 'mlp_once.recipe' has no 'Prepare'; "
        "did you mean 'prepare'?",
        "1 spec checked, 1 with problems",
    ]


def test_a_key_in_the_recipe_config_is_reported_with_the_schema_errors(
        launch, tmp_path, monkeypatch, isolated_path) -> None:
    repo = user_repo(tmp_path / "repo", "mlp_config")
    write(repo / "jobs" / "mlp.yaml", """\
        version: 1
        name: mlp
        compute: {gpu_count: 0}
        train:
          recipe: 'mlp_config.recipe:MLPRecipe'
          config: {hiden: 16}
        """)
    monkeypatch.chdir(repo)
    assert launch("check", "jobs/mlp.yaml").err.splitlines() == [
        "jobs/mlp.yaml:3:22: $.compute.gpu_count: 0 is less than the minimum of 1",
        "jobs/mlp.yaml:6:12: $.train.config: unknown key 'hiden'; did you mean 'hidden'?",
        "1 spec checked, 1 with problems",
    ]


@pytest.mark.parametrize("word, options, meant", [
    ("MlpRecipe", ["MLPRecipe", "MlpRecipes"], "MLPRecipe"),  # a case-only typo comes first
    ("prepair", ["prepare", "evaluate"], "prepare"),
    ("Evaluate", ["evaluate"], "evaluate"),
    ("train", ["prepare", "evaluate"], None),
])
def test_the_closest_name_prefers_one_that_differs_only_in_case(word, options, meant) -> None:
    from launcher.spec.refs import closest  # new here: a failed import is the old code's failure

    assert closest(word, options) == meant


def test_a_misspelt_command_is_a_usage_error_that_names_it(launch, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = launch("chek", "jobs/x.yaml")
    assert (result.code, result.out) == (2, "")
    assert result.err.splitlines()[-1] == "Error: no command 'chek'; did you mean 'check'?"
    assert "unexpected extra argument" not in result.err
    (tmp_path / "chek").write_text("version: 1\nname: x\n")  # a file by that name is a spec
    result = launch("chek", "--dry-run")
    assert result.err == "chek:1:1: $: missing required key 'train'\n"


# Importing torch fails in the process this puts first on PYTHONPATH: `check` on a machine
# without torch (a CI runner), whatever this one has.
NO_TORCH = '''\
import importlib.abc, sys


class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
        return None


sys.meta_path.insert(0, NoTorch())
'''


def check_without_torch(repo: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    blocker = repo.parent / "no-torch"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(NO_TORCH)
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    return subprocess.run([sys.executable, "-m", "launcher.cli", "check", *args], cwd=cwd or repo,
                          env=env, capture_output=True, text=True, timeout=120)


def test_without_torch_check_says_a_schema_file_would_spare_the_import(tmp_path) -> None:
    repo = user_repo(tmp_path / "repo", "mlp_torch", "import torch\n\n" + RECIPE)
    write(repo / "jobs" / "mlp.yaml", """\
        version: 1
        name: mlp
        train: {recipe: 'mlp_torch.recipe:MLPRecipe'}
        """)
    proc = check_without_torch(repo, "jobs/mlp.yaml")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == (
        "jobs/mlp.yaml:3:17: $.train.recipe: cannot import 'mlp_torch.recipe': "
        "ModuleNotFoundError: No module named 'torch'; a schema file beside the recipe, "
        "mlp_torch/recipe.MLPRecipe.schema.json, holding its config_schema as JSON, lets check "
        "validate train.config without importing it")
    # With that file, check validates the config and never imports the module.
    (repo / "mlp_torch" / "recipe.MLPRecipe.schema.json").write_text(
        '{"type": "object", "additionalProperties": false, "properties": {"hidden": {"type": "integer"}}}')
    write(repo / "jobs" / "bad.yaml", """\
        version: 1
        name: mlp
        train: {recipe: 'mlp_torch.recipe:MLPRecipe', config: {hidden: wide}}
        """)
    proc = check_without_torch(repo, "jobs/mlp.yaml", "jobs/bad.yaml")
    assert proc.stderr == ("jobs/bad.yaml:3:64: $.train.config.hidden: 'wide' is not of type 'integer'\n"
                           "2 specs checked, 1 with problems\n")


def test_from_a_subfolder_check_and_dry_run_import_from_the_repository_root(
        launch, tmp_path, monkeypatch, isolated_path) -> None:
    repo = user_repo(tmp_path / "repo", "mlp_sub")
    write(repo / "jobs" / "mlp.yaml", """\
        version: 1
        name: mlp
        image: {code: local}
        compute: {timeout: 1h}
        retries: 0
        train: {recipe: 'mlp_sub.recipe:MLPRecipe', config: {hidden: 4}}
        stages:
          prepare: {run: 'mlp_sub.recipe:prepare'}
        """)
    monkeypatch.chdir(repo / "sub")
    assert launch("check", "../jobs/mlp.yaml") == (0, "", "1 spec ok\n")
    dry = launch("--dry-run", "../jobs/mlp.yaml")
    assert dry.code == 0, dry.err


def test_from_a_subfolder_a_local_run_imports_from_the_repository_root(tmp_path) -> None:
    repo = user_repo(tmp_path / "repo", "probe_pkg", (ROOT / "tests/recipes/probe_recipe.py").read_text())
    write(repo / "jobs" / "probe.yaml", """\
        version: 1
        name: probe
        image: {code: local}
        retries: 0
        checkpoint: {volume: vol, every_steps: 2, async: false}
        train: {recipe: 'probe_pkg.recipe:Probe', steps: 2, log_every: 1, tracker: none}
        """)
    env = {**os.environ, "PROBE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "launcher.cli", "../jobs/probe.yaml", "--local",
                           "--volumes-dir", "../volumes"], cwd=repo / "sub", env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (repo / "volumes" / "vol" / "probe" / "step-00000002").is_dir()


def test_init_from_a_subfolder_sets_up_the_repository_root_and_says_where(
        launch, tmp_path, monkeypatch) -> None:
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    monkeypatch.chdir(repo / "src")
    result = launch("init", "job")
    assert result.code == 0
    assert result.err.splitlines()[:3] == [
        f"setting up the repository at {repo.resolve()}",
        "wrote ../jobs/job.yaml",
        "wrote ../schemas/job.schema.json (the spec's JSON Schema, for editors)",
    ]
    assert result.err.splitlines()[-1] == ("next: launch check ../jobs/job.yaml; launch --dry-run "
                                           "../jobs/job.yaml; launch ../jobs/job.yaml --local")
    assert (repo / "jobs" / "job.yaml").is_file() and not (repo / "src" / "jobs").exists()


def test_a_spec_outside_the_repository_is_told_the_truth(launch, tmp_path, monkeypatch) -> None:
    repo = user_repo(tmp_path / "repo", "mlp_outside")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write(elsewhere / "mlp.yaml", """\
        version: 1
        name: mlp
        train: {recipe: 'launcher.recipes.ppo:PPO'}
        """)
    monkeypatch.chdir(repo)  # launch runs in a git repository; the spec lies in none
    result = launch("--dry-run", str(elsewhere / "mlp.yaml"))
    assert result.code == 0
    assert result.err.splitlines()[0] == (
        f"note: image.code is git, but {elsewhere} is not in a git repository (the code is "
        "exported from the repository that holds the spec); set image.code: local, or pass "
        "--use-local-code (this dry run shows the app with local code)")


def test_a_class_defined_under_a_top_level_try_is_found_without_importing(launch, tmp_path, monkeypatch,
                                                                          isolated_path) -> None:
    guarded = "try:\n    import not_installed_here\nexcept ImportError:\n    pass\nelse:\n" + \
              "".join(f"    {line}\n" for line in RECIPE.splitlines())
    repo = user_repo(tmp_path / "repo", "mlp_guarded", guarded)
    (repo / "mlp_guarded" / "recipe.MLPRecipe.schema.json").write_text('{"type": "object"}')
    write(repo / "jobs" / "mlp.yaml", """\
        version: 1
        name: mlp
        train: {recipe: 'mlp_guarded.recipe:MLPRecipe'}
        """)
    monkeypatch.chdir(repo)
    assert launch("check", "jobs/mlp.yaml") == (0, "", "1 spec ok\n")


def test_the_root_modules_are_found_from_is_git_s_top_level(tmp_path) -> None:
    from launcher import gitinfo

    repo = user_repo(tmp_path / "repo", "mlp_tree")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e"]
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    subprocess.run([*git, "worktree", "add", "-q", str(tmp_path / "tree")], check=True)
    (tmp_path / "outside").mkdir()
    for start in (repo / "jobs" / "x.yaml", repo / "sub", tmp_path / "tree" / "mlp_tree" / "recipe.py"):
        assert gitinfo.nearest_work_tree(start) == gitinfo.find_repo(start).root
    assert gitinfo.nearest_work_tree(tmp_path / "outside" / "x.yaml") is None
