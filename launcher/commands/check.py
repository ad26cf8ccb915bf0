"""`launch check FILE...`: validate many specs at once, for CI and pre-commit."""

from __future__ import annotations

import click

from launcher import dockerfile, gitinfo, repofiles
from launcher.errors import SpecError
from launcher.load import load_spec


def check(paths: tuple[str, ...], sets: tuple[str, ...]) -> int:
    bad = 0
    for path in paths:
        try:
            loaded = load_spec(path, sets)
            root = gitinfo.find_repo(loaded.path.resolve()).root
            dockerfile.require(loaded, root)
            repofiles.require_inputs(loaded.doc, loaded.spec, root)
        except SpecError as exc:
            bad += 1
            click.echo(str(exc), err=True)
            continue
        for warning in loaded.warnings:
            click.echo(f"warning: {warning}", err=True)
    noun = "spec" if len(paths) == 1 else "specs"
    summary = f"{len(paths)} {noun} checked, {bad} with problems" if bad else f"{len(paths)} {noun} ok"
    click.echo(summary, err=True)
    return 1 if bad else 0
