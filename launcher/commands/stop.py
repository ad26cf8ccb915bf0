"""`launch stop RUN [--now]`: a run here (its id, or a unique prefix) or on Modal (its call id)."""

from __future__ import annotations

from pathlib import Path

import click

from launcher import gitinfo
from launcher.backends.local import local_state
from launcher.backends.stopping import find_local, stop_local, stop_modal
from launcher.errors import RunError

MODAL_CALL = "fc-"  # Modal's function call ids start so


def stop(run: str, now: bool, volumes_dir: Path | None, environment: str | None,
         job: str | None) -> int:
    volumes = volumes_dir or local_state(gitinfo.find_repo(Path.cwd()).root) / "volumes"
    found = find_local(volumes, run)
    if found is not None:
        click.echo(stop_local(volumes, found, now), err=True)
        return 0
    if not run.startswith(MODAL_CALL):
        raise RunError(f"{run}: no such run here (runs in {volumes}), nor a Modal call id "
                       f"({MODAL_CALL}...)")
    from launcher.backends.modal import CREDENTIALS_HELP, has_credentials

    if not has_credentials():
        raise RunError(f"{run}: {CREDENTIALS_HELP}")
    spec = None
    if job is not None:
        from launcher.load import load_spec

        spec = load_spec(job).spec
        environment = environment or spec.environment
    click.echo(stop_modal(run, now, environment, spec), err=True)
    return 0
