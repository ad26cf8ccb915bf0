"""`launch init [NAME]`: set a repository up for launcher and write a starter spec.

Writes only what is missing, never over a file, and says what it wrote: the spec, the schema its
modeline points at, the Dockerfile it names, and `.launch/` in .gitignore.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path, PurePosixPath

import click

from launcher import dockerfile as dockerfiles
from launcher import gitinfo
from launcher.errors import LauncherError, Location, Problem, SpecError
from launcher.render import environment
from launcher.resources import read_text
from launcher.spec.validate import RECIPE_REF, job_schema

DEFAULT_RECIPE = "launcher.recipes.ppo:PPO"
MAX_VOLUME = 64  # the schema's limit on checkpoint.volume
SCHEMA = Path("schemas") / "job.schema.json"  # in the repository, where the modeline points


def check_name(name: str) -> None:
    rule = job_schema()["properties"]["name"]
    if not re.search(rule["pattern"], name):
        raise SpecError([Problem(Location("NAME"), "$.name", f"{name!r} {rule['x-pattern-hint']}")])


def check_recipe(recipe: str) -> None:
    if not RECIPE_REF.match(recipe):
        raise SpecError([Problem(Location(f"--recipe {recipe}"), "$.train.recipe",
                                 f"{recipe!r} is not a recipe reference: use module:Class, "
                                 f"e.g. {DEFAULT_RECIPE}")])


def check_dockerfile(path: str) -> None:
    rule = job_schema()["properties"]["image"]["properties"]["dockerfile"]
    if not re.search(rule["pattern"], path) or ".." in PurePosixPath(path).parts:  # init writes it
        raise SpecError([Problem(Location(f"--dockerfile {path}"), "$.image.dockerfile",
                                 f"{path!r} {rule['x-pattern-hint']}")])


def _existing(folder: Path) -> Path:
    """`folder`, or its nearest ancestor that exists (git needs a real directory to start in)."""
    folder = folder.absolute()
    return next(p for p in (folder, *folder.parents) if p.is_dir())


def schema_ref(out: Path, root: Path) -> str:
    """The modeline's target: the repository's schema file, relative to `out`'s folder."""
    return Path(os.path.relpath(root.resolve() / SCHEMA, out.parent.absolute().resolve())).as_posix()


def volume_name(name: str) -> str:
    suffixed = f"{name}-checkpoints"
    return suffixed if len(suffixed) <= MAX_VOLUME else name


def starter(name: str, recipe: str, schema: str, dockerfile: str = dockerfiles.DEFAULT) -> str:
    """The starter spec's text: a pure function of its inputs."""
    return environment().get_template("job.yaml.j2").render(
        name=name, recipe=recipe, schema=schema, volume=volume_name(name), dockerfile=dockerfile)


def shown(path: Path, root: Path | None = None) -> str:
    """`path` as the user would type it from here: relative to the working directory if inside
    it or, from a subfolder, inside the repository `root` (../jobs/x.yaml); else as given."""
    here, where = Path.cwd().resolve(), path.resolve()
    if where.is_relative_to(here) or (root is not None and where.is_relative_to(root.resolve())
                                      and here.is_relative_to(root.resolve())):
        return os.path.relpath(where, here)
    return str(path)


def write_new(path: Path, text: str) -> bool:
    """Create `path` with `text`; False (and nothing written) when it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x", encoding="utf-8") as handle:  # "x": never replace someone's file
            handle.write(text)
    except FileExistsError:
        return False
    return True


def write_spec(path: Path, name: str, recipe: str, dockerfile: str, root: Path) -> None:
    if not write_new(path, starter(name, recipe, schema_ref(path, root), dockerfile)):
        raise LauncherError(f"{path}: already exists; launch init does not overwrite a file "
                            "(pass --out for another path)")
    click.echo(f"wrote {shown(path, root)}", err=True)


def write_schema(root: Path) -> None:
    schema = read_text("schemas", "job.schema.json")
    where = shown(root / SCHEMA, root)
    if write_new(root / SCHEMA, schema):
        click.echo(f"wrote {where} (the spec's JSON Schema, for editors)", err=True)
    elif (root / SCHEMA).read_text("utf-8") != schema:
        click.echo(f"kept {where}, which differs from this launcher's schema "
                   f"(launch schema > {where} updates it)", err=True)


def write_dockerfile(root: Path, dockerfile: str) -> None:
    if not write_new(root / dockerfile, dockerfiles.starter(root, dockerfile)):
        return
    found = dockerfiles.dependency_files(root)
    deps = f"your dependencies from {', '.join(found)}" if found else "add your dependencies to it"
    click.echo(f"wrote {shown(root / dockerfile, root)} (the training image: CUDA, Python, uv, the "
               f"runtime's dependencies; {deps})", err=True)


def ignore_launch_folder(root: Path) -> None:
    """`.launch/` (rendered apps, exported commits, local volumes) in .gitignore, once."""
    gitignore = root / ".gitignore"
    text = gitignore.read_text("utf-8") if gitignore.is_file() else ""
    if any(line.strip() in (".launch", ".launch/", "/.launch", "/.launch/") for line in text.splitlines()):
        return
    with gitignore.open("a", encoding="utf-8") as handle:
        handle.write(("\n" if text and not text.endswith("\n") else "") + ".launch/\n")
    click.echo(f"added .launch/ to {shown(gitignore, root)}", err=True)


def _default_spec(root: Path, name: str) -> Path:
    """jobs/NAME.yaml at the repository's root, as a path from the working directory."""
    return Path(os.path.relpath(root.resolve() / "jobs" / f"{name}.yaml"))


def init(name: str | None, recipe: str, out: str | None, dockerfile: str = dockerfiles.DEFAULT) -> int:
    """Without NAME, only the repository's part: schema, Dockerfile, .gitignore."""
    if name is not None:
        check_name(name)
        check_recipe(recipe)
    check_dockerfile(dockerfile)
    repo = gitinfo.find_repo(_existing(Path(out).parent) if out is not None else Path.cwd())
    # From a subfolder, the starter spec goes to the repository's jobs/, with the rest.
    spec = None if name is None else Path(out) if out is not None else _default_spec(repo.root, name)
    if Path.cwd().resolve() != repo.root.resolve():
        click.echo(f"setting up the repository at {repo.root}", err=True)
    if spec is not None:
        write_spec(spec, name, recipe, dockerfile, repo.root)
    write_schema(repo.root)
    write_dockerfile(repo.root, dockerfile)
    if repo.in_git:
        ignore_launch_folder(repo.root)
    if spec is None:
        click.echo("next: launch init NAME writes a starter spec", err=True)
    else:
        quoted = shlex.quote(shown(spec, repo.root))
        click.echo(f"next: launch check {quoted}; launch --dry-run {quoted}; "
                   f"launch {quoted} --local", err=True)
    return 0
