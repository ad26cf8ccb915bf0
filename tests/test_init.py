"""launch init: the starter spec, its modeline, the repository set-up (schema, Dockerfile,
.gitignore), the checks on NAME, --recipe and --dockerfile, no overwrites."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from launcher import dockerfile
from launcher.commands.init import schema_ref, starter
from launcher.load import load_spec
from launcher.render import yaml_value

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schemas" / "job.schema.json"
MODELINE = "# yaml-language-server: $schema="
NAME_HINT = ("is not a valid app name: use letters, digits, '.', '_' and '-' "
             "(at most 64, starting with a letter or digit)")


def git_repo(folder: Path) -> Path:
    """A git repository with one commit and the schema at schemas/job.schema.json."""
    (folder / "schemas").mkdir(parents=True)
    shutil.copy(SCHEMA, folder / "schemas" / "job.schema.json")
    for args in (["init", "-q"], ["add", "."],
                 ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init"]):
        subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)
    return folder


def modeline_target(spec: Path) -> str:
    first = spec.read_text("utf-8").splitlines()[0]
    assert first.startswith(MODELINE)
    return first[len(MODELINE):]


NEXT = "next: launch check {0}; launch --dry-run {0}; launch {0} --local\n"
WROTE_SCHEMA = "wrote schemas/job.schema.json (the spec's JSON Schema, for editors)\n"
WROTE_DOCKERFILE = ("wrote Dockerfile.cuda (the training image: CUDA, Python, uv, the runtime's dependencies; "
                    "add your dependencies to it)\n")


def test_init_writes_a_starter_that_passes_check(launch, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # outside git: the repository root is the working directory
    assert launch("init", "my-job") == (
        0, "", "wrote jobs/my-job.yaml\n" + WROTE_SCHEMA + WROTE_DOCKERFILE
               + NEXT.format("jobs/my-job.yaml"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dockerfile.cuda", "jobs", "schemas"]
    assert launch("check", "jobs/my-job.yaml") == (0, "", "1 spec ok\n")
    spec = load_spec("jobs/my-job.yaml").spec
    assert (spec.name, spec.train.recipe, spec.checkpoint.volume) == (
        "my-job", "launcher.recipes.ppo:PPO", "my-job-checkpoints")


def test_the_starter_is_commented_yaml_that_ends_in_a_newline() -> None:
    text = starter("demo", "launcher.recipes.ppo:PPO", "../schemas/job.schema.json")
    lines = text.splitlines()
    assert lines[0] == "# yaml-language-server: $schema=../schemas/job.schema.json"
    assert "name: demo             # the Modal app name" in lines
    assert "  recipe: launcher.recipes.ppo:PPO" in lines
    assert "  volume: demo-checkpoints   # a Modal Volume, created if missing" in lines
    assert text.endswith("config: {}               # the recipe's hyperparameters, checked "
                         "against its own schema\n")
    assert sum(1 for line in lines if "#" in line) >= 20  # a starter explains itself


@pytest.mark.parametrize("name", ["123", "no", "true", "1e3", "0x10", "null", "a.b_c-d", "x" * 64])
def test_names_that_yaml_would_misread_stay_strings(name: str, launch, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert launch("init", name).code == 0
    loaded = load_spec(f"jobs/{name}.yaml")
    assert loaded.spec.name == name
    assert len(loaded.spec.checkpoint.volume) <= 64


@pytest.mark.parametrize("name", ["bad name", ".lead", "_x", "x" * 65, "a/b", ""])
def test_a_bad_name_is_refused_with_the_schemas_rule(name: str, launch, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert launch("init", name) == (1, "", f"NAME: $.name: {name!r} {NAME_HINT}\n")
    assert not (tmp_path / "jobs").exists()


def test_a_bad_recipe_is_refused(launch, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert launch("init", "job", "--recipe", "ppo.PPO") == (
        1, "", "--recipe ppo.PPO: $.train.recipe: 'ppo.PPO' is not a recipe reference: "
               "use module:Class, e.g. launcher.recipes.ppo:PPO\n")
    assert not (tmp_path / "jobs").exists()


def test_init_never_overwrites(launch, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "job.yaml").write_text("mine\n", "utf-8")
    assert launch("init", "job") == (
        1, "", "jobs/job.yaml: already exists; launch init does not overwrite a file "
               "(pass --out for another path)\n")
    assert (tmp_path / "jobs" / "job.yaml").read_text("utf-8") == "mine\n"
    assert launch("init", "job", "--out", "other.yaml").code == 0
    assert launch("init", "job", "--out", "other.yaml").code == 1


def test_a_users_recipe_next_to_the_specs(launch, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "initrecipes.py").write_text("class Tiny:\n    pass\n", "utf-8")
    (tmp_path / "initrecipes.Tiny.schema.json").write_text(
        '{"type": "object", "additionalProperties": false}', "utf-8")
    assert launch("init", "tiny", "--recipe", "initrecipes:Tiny").code == 0
    assert "  recipe: initrecipes:Tiny" in (tmp_path / "jobs" / "tiny.yaml").read_text("utf-8")
    assert launch("check", "jobs/tiny.yaml") == (0, "", "1 spec ok\n")


@pytest.mark.parametrize("out, expected", [
    ("jobs/a.yaml", "../schemas/job.schema.json"),
    ("a.yaml", "schemas/job.schema.json"),
    ("deep/er/a.yaml", "../../schemas/job.schema.json"),
    ("schemas/a.yaml", "job.schema.json"),
])
def test_the_modeline_points_at_the_repos_schema_relative_to_the_file(
        out: str, expected: str, launch, tmp_path, monkeypatch) -> None:
    repo = git_repo(tmp_path / "repo")
    (repo / "sub").mkdir()
    monkeypatch.chdir(repo / "sub")  # --out is relative to the cwd; the modeline to the file
    assert launch("init", "job", "--out", f"../{out}").code == 0
    written = repo / out
    assert modeline_target(written) == expected
    assert (written.parent / expected).resolve() == (repo / "schemas" / "job.schema.json").resolve()


def test_the_modeline_in_this_repo_resolves_to_its_schema(tmp_path) -> None:
    # The path a `launch init` here would write into jobs/: it must reach schemas/job.schema.json.
    target = schema_ref(ROOT / "jobs" / "new.yaml", ROOT)
    assert target == "../schemas/job.schema.json"
    assert (ROOT / "jobs" / target).resolve() == SCHEMA.resolve()


def fresh_repo(folder: Path) -> Path:
    """`git init` and nothing else: no commit, no files."""
    folder.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    return folder


def test_in_a_fresh_repository_init_sets_it_up_at_its_root(launch, tmp_path, monkeypatch) -> None:
    repo = fresh_repo(tmp_path / "repo")
    (repo / "src").mkdir()
    monkeypatch.chdir(repo / "src")  # from a subfolder: the set-up still goes to the top level
    assert launch("init", "job", "--recipe", "mypkg.recipes:Tiny", "--out", "../jobs/job.yaml") == (
        0, "", f"setting up the repository at {repo}\n"
               "wrote ../jobs/job.yaml\n"
               "wrote ../schemas/job.schema.json (the spec's JSON Schema, for editors)\n"
               "wrote ../Dockerfile.cuda (the training image: CUDA, Python, uv, the "
               "runtime's dependencies; add your dependencies to it)\n"
               "added .launch/ to ../.gitignore\n" + NEXT.format("../jobs/job.yaml"))
    assert (repo / ".gitignore").read_text() == ".launch/\n"
    assert (repo / "schemas/job.schema.json").read_text() == SCHEMA.read_text()
    assert (repo / "Dockerfile.cuda").read_text() == dockerfile.starter(repo)
    # The modeline resolves to the schema it wrote, relative to the spec, never an absolute path.
    assert modeline_target(repo / "jobs/job.yaml") == "../schemas/job.schema.json"
    assert not list(repo.rglob(".launch"))


def test_init_again_writes_nothing_and_keeps_every_file(launch, tmp_path, monkeypatch) -> None:
    repo = fresh_repo(tmp_path / "repo")
    monkeypatch.chdir(repo)
    (repo / ".gitignore").write_text("*.log")  # no newline at the end
    (repo / "Dockerfile.cuda").write_text("FROM mine\n")
    assert launch("init", "a").err == ("wrote jobs/a.yaml\n" + WROTE_SCHEMA + "added .launch/ to .gitignore\n"
                                       + NEXT.format("jobs/a.yaml"))
    assert (repo / ".gitignore").read_text() == "*.log\n.launch/\n"
    assert launch("init") == (0, "", "next: launch init NAME writes a starter spec\n")
    assert launch("init", "b").err == "wrote jobs/b.yaml\n" + NEXT.format("jobs/b.yaml")
    assert (repo / ".gitignore").read_text() == "*.log\n.launch/\n"
    assert (repo / "Dockerfile.cuda").read_text() == "FROM mine\n"


@pytest.mark.parametrize("line", [".launch", ".launch/", "/.launch", "/.launch/", "  .launch/  "])
def test_an_existing_launch_entry_in_gitignore_is_kept(line: str, launch, tmp_path, monkeypatch) -> None:
    repo = fresh_repo(tmp_path / "repo")
    monkeypatch.chdir(repo)
    (repo / ".gitignore").write_text(f"build/\n{line}\n")
    assert launch("init").code == 0
    assert (repo / ".gitignore").read_text() == f"build/\n{line}\n"


def test_a_schema_that_differs_is_kept_and_named(launch, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas/job.schema.json").write_text("{}\n")
    assert launch("init").err.splitlines()[0] == (
        "kept schemas/job.schema.json, which differs from this launcher's schema "
        "(launch schema > schemas/job.schema.json updates it)")
    assert (tmp_path / "schemas/job.schema.json").read_text() == "{}\n"


def test_dockerfile_names_where_the_image_comes_from(launch, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(fresh_repo(tmp_path / "repo"))
    assert launch("init", "job", "--dockerfile", "docker/train.Dockerfile").code == 0
    assert "image:\n  dockerfile: docker/train.Dockerfile   # relative to the repository root;" in \
        Path("jobs/job.yaml").read_text()
    assert Path("docker/train.Dockerfile").read_text() == dockerfile.starter(Path.cwd(), "docker/train.Dockerfile")
    assert not Path("Dockerfile.cuda").exists()
    assert launch("check", "jobs/job.yaml") == (0, "", "1 spec ok\n")


@pytest.mark.parametrize("path", ["/etc/Dockerfile", "../Dockerfile", "a b"])
def test_a_bad_dockerfile_path_is_refused(path: str, launch, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert launch("init", "job", "--dockerfile", path) == (
        1, "", f"--dockerfile {path}: $.image.dockerfile: {path!r} is not a relative path inside "
               "the repository\n")
    assert list(tmp_path.iterdir()) == []


def test_out_needs_a_name(launch, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = launch("init", "--out", "x.yaml")
    assert (result.code, result.err.splitlines()[-1]) == (2, "Error: --out needs NAME")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", [
    "plain", "no", "123", "a: b", "#x", "", "it's", 'say "hi"', "a\nb", "tab\there", "é", "  lead",
    None, True, 0, 2.5, [], ["x\ny", "no"], {"k": "no", "n": {"x": None}},
])
def test_the_yaml_filter_reads_back_as_the_same_value_on_one_line(value) -> None:
    text = yaml_value(value)
    assert "\n" not in text
    assert yaml.safe_load(f"key: {text}  # comment\n") == {"key": value}
    assert yaml.safe_load(f"outer:\n  key: {text}\n") == {"outer": {"key": value}}


@pytest.mark.parametrize("value, text", [
    ("plain", "plain"), ("no", "'no'"), ("123", "'123'"), ("a\nb", '"a\\nb"'), (None, "null"),
    ([1, "x"], "[1, x]"), ({"b": 1, "a": "no"}, "{a: 'no', b: 1}"),
])
def test_the_yaml_filter_text(value, text: str) -> None:
    assert yaml_value(value) == text


def test_init_is_on_the_help_page(launch) -> None:
    helped = launch("init", "--help")
    assert helped.code == 0
    assert "Usage: launch init [OPTIONS] [NAME]" in helped.out
    assert "--recipe MODULE:CLASS" in helped.out
    assert "Where to write it (default jobs/NAME.yaml)." in helped.out
    assert "--dockerfile PATH" in helped.out
