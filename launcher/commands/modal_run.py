"""`launch JOB`: check what would be deployed, render it into .launch/apps/, run it on Modal."""

from __future__ import annotations

import click

from launcher import codeship, gitinfo
from launcher.backends.modal import CREDENTIALS_HELP, has_credentials, run_modal
from launcher.commands.render_app import Rendered, render_loaded, write_if_changed
from launcher.errors import RunError
from launcher.load import load_spec
from launcher.plan import plan
from launcher.spec.pipeline import check_rerun


def refuse_dirty(source: str, repo: gitinfo.Repo, commit: str) -> None:
    """`code: git` at HEAD would silently miss uncommitted work: say so instead."""
    dirty = [f for f in gitinfo.dirty_files(repo.root) if not f.startswith(".launch/")]
    if dirty:
        shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
        raise RunError(f"{source}: image.code is git, which ships commit {commit[:12]}, "
                       f"but these changes are not committed and the run would miss them: {shown}; "
                       "commit them, or pass --use-local-code")


def check_commit(job: str, rendered: Rendered) -> None:
    """`code: git` at HEAD: refuse uncommitted work, before anything else is asked for."""
    commit = rendered.code.git_commit
    if rendered.code.mode == "git" and commit is not None and rendered.loaded.spec.image.git.ref is None:
        refuse_dirty(job, rendered.repo, commit)


def ship_commit(rendered: Rendered) -> None:
    """`code: git`: export the commit for the image."""
    if rendered.code.mode == "git" and rendered.code.git_commit is not None:
        codeship.export(rendered.repo.root, rendered.code.git_commit)


def remote(job: str, sets: tuple[str, ...], use_local_code: bool, detach: bool,
           rerun: tuple[str, ...] = ()) -> int:
    loaded = load_spec(job, sets)
    check_rerun(job, loaded.spec, rerun)
    # What the user can fix in the repository first: a run refused for uncommitted changes
    # should not first send them to set up credentials.
    rendered = render_loaded(loaded, use_local_code)
    if rendered.note:
        raise RunError(f"{job}: {rendered.note}")
    check_commit(job, rendered)
    if not has_credentials():
        raise RunError(CREDENTIALS_HELP)
    ship_commit(rendered)
    app_path = rendered.repo.root / ".launch" / "apps" / f"{loaded.spec.name}.py"
    write_if_changed(app_path, rendered.app)
    click.echo(plan(loaded.spec, job, rendered.code_line, rendered.ship_lines()), err=True, nl=False)
    from launcher.backends.runinfo import modal_run

    run = modal_run(loaded.spec, job, rendered.repo.root, rendered.code.mode, rendered.code.git_commit)
    return run_modal(app_path, loaded.spec.name, detach, rerun, run)
