"""`launch stop RUN [--now]`: a run here (its id, or a unique prefix) or on Modal (its run id, found
in the run records on the jobs' volumes, or its coordinator's call id)."""

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
    from launcher.backends.modal import CREDENTIALS_HELP, has_credentials

    if not run.startswith(MODAL_CALL) and not has_credentials():
        raise RunError(f"{run}: no such run here (runs in {volumes}); on Modal: {CREDENTIALS_HELP}")
    if not has_credentials():
        raise RunError(f"{run}: {CREDENTIALS_HELP}")
    spec = None
    if job is not None:
        from launcher.load import load_spec

        spec = load_spec(job).spec
        environment = environment or spec.environment
    call = run if run.startswith(MODAL_CALL) else _coordinator_call(run, environment, job)
    click.echo(stop_modal(call, now, environment, spec), err=True)
    return 0


def _coordinator_call(run: str, environment: str | None, job: str | None) -> str:
    """A Modal run named by its run id (or a unique start of it): the call of its coordinator
    (the pipeline's driver, or the training call), from the run's record on its volume."""
    from launcher.registry import Where, find

    seen = find(run, Where(local=False, environment=environment), (job,) if job else ())
    call = str(seen.record.coordinator.get("call_id") or "")
    if not call.startswith(MODAL_CALL):
        raise RunError(f"{seen.record.run}: its record names no Modal call to stop")
    return call
