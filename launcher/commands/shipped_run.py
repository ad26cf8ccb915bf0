"""`launch JOB --local --shipped`: the code the image gets, laid out in a scratch folder.

With `image.code: git`, the pinned commit's `git archive`; with `local`, the working tree's ship
set; less what CODE_IGNORE and `.launchignore` leave out in both. The workers then run from that
folder as the container runs from /opt/project, so a recipe module or a data file that is not
committed fails here with the error it would raise on Modal.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from launcher import codeship, gitinfo
from launcher.backends.local import local_state
from launcher.codesource import CodeSource, resolve
from launcher.errors import RunError
from launcher.shipreport import size
from launcher.spec.model import JobSpec


def lay_out_shipped(job: str, spec: JobSpec, repo: gitinfo.Repo,
                    use_local_code: bool) -> tuple[CodeSource, Path]:
    """The code source the app renders with, and the folder the workers run from."""
    resolved = resolve(spec, repo, use_local_code)
    if resolved.note:
        raise RunError(f"{job}: --shipped: {resolved.note}")
    code = resolved.source
    # One folder per run, so a second run of the job (which its lock refuses later) never
    # replaces the tree a running one works in.
    target = local_state(repo.root) / "shipped" / f"{spec.name}-{os.getpid()}"
    if code.mode == "git" and code.git_commit:
        source = codeship.export(repo.root, code.git_commit)
        ship = codeship.shipped_commit_folder(source)
        what = f"commit {code.git_commit[:12]}"
    else:
        source, ship = repo.root, codeship.shipped_tree(repo.root)
        what = "this working tree's ship set"
    codeship.lay_out(source, ship, target)
    click.echo(f"[launch] --shipped: {what} ({len(ship.files)} files, {size(ship.total)}) in "
               f"{target}, the working directory, as {codeship.CODE_DIR} in the image (removed when the "
               "run ends)", err=True)
    return code, target
