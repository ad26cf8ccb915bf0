"""`launch init NAME`: write a commented starter spec that passes `launch check`."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import click

from launcher import gitinfo
from launcher.errors import LauncherError, Location, Problem, SpecError
from launcher.render import environment
from launcher.spec.validate import RECIPE_REF, job_schema

DEFAULT_RECIPE = "launcher.recipes.ppo:PPO"
MAX_VOLUME = 64  # the schema's limit on checkpoint.volume


def check_name(name: str) -> None:
    rule = job_schema()["properties"]["name"]
    if not re.search(rule["pattern"], name):
        raise SpecError([Problem(Location("NAME"), "$.name", f"{name!r} {rule['x-pattern-hint']}")])


def check_recipe(recipe: str) -> None:
    if not RECIPE_REF.match(recipe):
        raise SpecError([Problem(Location(f"--recipe {recipe}"), "$.train.recipe",
                                 f"{recipe!r} is not a recipe reference: use module:Class, "
                                 f"e.g. {DEFAULT_RECIPE}")])


def _existing(folder: Path) -> Path:
    """`folder`, or its nearest ancestor that exists (git needs a real directory to start in)."""
    folder = folder.absolute()
    return next(p for p in (folder, *folder.parents) if p.is_dir())


def schema_ref(out: Path) -> str:
    """The modeline's target: the repo's schema relative to `out`'s folder, else the schema's $id."""
    root = gitinfo.find_repo(_existing(out.parent)).root
    schema = root / "schemas" / "job.schema.json"
    if not schema.is_file():
        return str(job_schema()["$id"])
    return Path(os.path.relpath(schema.resolve(), out.parent.absolute().resolve())).as_posix()


def volume_name(name: str) -> str:
    suffixed = f"{name}-checkpoints"
    return suffixed if len(suffixed) <= MAX_VOLUME else name


def starter(name: str, recipe: str, schema: str) -> str:
    """The starter spec's text: a pure function of its inputs."""
    return environment().get_template("job.yaml.j2").render(
        name=name, recipe=recipe, schema=schema, volume=volume_name(name))


def init(name: str, recipe: str, out: str | None) -> int:
    check_name(name)
    check_recipe(recipe)
    path = Path(out) if out is not None else Path("jobs") / f"{name}.yaml"
    text = starter(name, recipe, schema_ref(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x", encoding="utf-8") as handle:  # "x": never replace someone's spec
            handle.write(text)
    except FileExistsError:
        raise LauncherError(f"{path}: already exists; launch init does not overwrite a file "
                            "(pass --out for another path)") from None
    shown = shlex.quote(str(path))
    click.echo(f"wrote {path}\nnext: launch check {shown}; launch --dry-run {shown}", err=True)
    return 0
