"""`launch diff OLD NEW`: what a spec change does, as a unified diff a reviewer can read.

Two sections: the resolved spec (sorted `path = value` lines, defaults and bases included) and
the generated app. Each app is rendered with its own spec's code mode (`image.code: git` pinned
to the commit a launch would pin, as a dry run does), so a change of mode shows the image steps
it changes; both under NEW's name, so the files' names do not show up as differences.
"""

from __future__ import annotations

import difflib

import click

from launcher import gitinfo
from launcher.codesource import resolve
from launcher.errors import printable
from launcher.explain import flat_lines, resolved
from launcher.load import Loaded, load_spec
from launcher.render import render


def unified(old: list[str], new: list[str], old_name: str, new_name: str) -> list[str]:
    return list(difflib.unified_diff(old, new, old_name, new_name, lineterm=""))


def spec_lines(loaded: Loaded) -> list[str]:
    return flat_lines(resolved(loaded.doc, loaded.spec))


def app_lines(loaded: Loaded, label: str) -> list[str]:
    code = resolve(loaded.spec, gitinfo.find_repo(loaded.path.resolve()), use_local_code=False)
    return render(loaded.spec, label, code.source).splitlines()


def diff_text(old: Loaded, new: Loaded) -> str:
    """The two sections' unified diffs; empty when the specs resolve to the same job."""
    lines = unified(spec_lines(old), spec_lines(new), f"{old.source} (resolved spec)",
                    f"{new.source} (resolved spec)")
    lines += unified(app_lines(old, new.source), app_lines(new, new.source),
                     f"{old.source} (app)", f"{new.source} (app)")
    return "".join(f"{printable(line)}\n" for line in lines)


def diff(old: str, new: str, sets: tuple[str, ...], exit_code: bool) -> int:
    text = diff_text(load_spec(old, sets), load_spec(new, sets))
    if not text:
        click.echo("no difference", err=True)
        return 0
    click.echo(text, nl=False)
    return 1 if exit_code else 0
