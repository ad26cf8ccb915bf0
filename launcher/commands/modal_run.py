"""`launch JOB`: check what would be deployed, render it into .launch/apps/, run it on Modal."""

from __future__ import annotations

import click

from launcher import gitinfo
from launcher.backends.modal import CREDENTIALS_HELP, has_credentials, run_modal
from launcher.commands.render_app import render_loaded, write_if_changed
from launcher.errors import RunError
from launcher.load import load_spec
from launcher.plan import plan


def refuse_dirty(source: str, repo: gitinfo.Repo, pinned: str | None) -> None:
    """`code: git` at HEAD would silently miss uncommitted work: say so instead."""
    dirty = [f for f in gitinfo.dirty_files(repo.root) if not f.startswith(".launch/")]
    if dirty and pinned is None:
        shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
        raise RunError(f"{source}: image.code is git, which installs commit {(repo.head or '')[:12]}, "
                       f"but these changes are not committed and the run would miss them: {shown}; "
                       "commit them, or pass --use-local-code")


def remote(job: str, sets: tuple[str, ...], use_local_code: bool, detach: bool) -> int:
    loaded = load_spec(job, sets)
    if not has_credentials():
        raise RunError(CREDENTIALS_HELP)
    rendered = render_loaded(loaded, use_local_code)
    if rendered.note:
        raise RunError(f"{job}: {rendered.note}")
    repo = rendered.repo
    if not use_local_code and loaded.spec.image.code == "git":
        refuse_dirty(job, repo, loaded.spec.image.git.ref)
    app_path = repo.root / ".launch" / "apps" / f"{loaded.spec.name}.py"
    write_if_changed(app_path, rendered.app)
    click.echo(plan(loaded.spec, job, rendered.code_line), err=True, nl=False)
    return run_modal(app_path, loaded.spec.name, detach)
