"""The Modal backend: deploy the rendered app, spawn `train`, follow it, report its status.

Memory snapshots and keep-warm only exist for deployed apps, so the app is deployed (named
from the spec) and the training call is spawned, which also frees it from the 24 h limit
on `.remote` calls. A spec with `stages:` spawns the app's driver function (`pipeline`)
instead, which calls each stage in turn; its result names every stage's outcome. Logs are
followed with Modal's own CLI (`modal app logs`).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from launcher.backends.worker import import_app
from launcher.errors import EXIT_BUG, EXIT_STOPPED, RunError

if TYPE_CHECKING:
    from launcher.runtime.pipeline.results import PipelineResult

CREDENTIALS_HELP = ("no Modal credentials: run `modal setup` (or set MODAL_TOKEN_ID and "
                    "MODAL_TOKEN_SECRET); `launch JOB --local` runs without an account")


@dataclass(frozen=True)
class Submission:
    app_name: str
    call_id: str
    environment: str | None = None  # the Modal Environment it runs in; None: the active one
    run_id: str | None = None  # the run's id (launch runs / logs / stop RUN)

    @property
    def env_args(self) -> list[str]:
        """Modal CLI's flag for the environment, where the job names one."""
        return ["--env", self.environment] if self.environment else []

    def follow_commands(self) -> list[str]:
        """Follow logs, stop, see status: this run's, never the whole app's."""
        env = "".join(f" {arg}" for arg in self.env_args)
        run = self.run_id or self.call_id
        return [f"launch logs {run} --follow{env}", f"launch stop {run}{env}", f"launch runs {self.app_name}{env}"]


def has_credentials() -> bool:
    from modal.config import config

    return bool(config.get("token_id") and config.get("token_secret"))


def _server_error(exc: BaseException) -> RunError:
    import modal.exception

    if isinstance(exc, modal.exception.AuthError):
        return RunError(CREDENTIALS_HELP)
    if isinstance(exc, (modal.exception.ConnectionError, OSError, TimeoutError)):
        return RunError(f"cannot reach Modal: {type(exc).__name__}: {exc}; check the network, or use --local")
    return RunError(f"Modal did not accept the job: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def server_errors(what: str) -> Iterator[None]:
    """Modal's server errors while reading `what`, as one line each."""
    import modal.exception

    try:
        yield
    except (modal.exception.Error, OSError, TimeoutError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        error = _server_error(exc)
        raise RunError(f"{what}: {error}" if "credentials" not in str(error) else str(error)) from None


def submit(app_path: Path, app_name: str, rerun: tuple[str, ...] = (),
           run: dict[str, Any] | None = None) -> Submission:
    """Deploy the app and spawn its training call (a pipeline: its driver); every server error
    becomes one line."""
    import modal

    module = import_app(app_path)
    environment = getattr(module, "ENVIRONMENT", None)  # the app names it when the spec does
    # Deployed, then looked up, in the same Environment (the app's volume and secrets name it too).
    where = {"environment_name": environment} if environment else {}
    try:
        with modal.enable_output():
            module.app.deploy(name=app_name, **where)
        if hasattr(module, "pipeline"):  # the driver calls each stage: it outlives this machine
            call = modal.Function.from_name(app_name, "pipeline", **where).spawn(rerun=list(rerun), run=run)
        else:
            trainer = modal.Cls.from_name(app_name, "Trainer", **where)
            call = trainer().train.spawn(resume=True, steps=0, run=run)
    except (modal.exception.Error, OSError, TimeoutError) as exc:
        raise _server_error(exc) from None
    return Submission(app_name, call.object_id, environment, run["id"] if run else None)


def follow(sub: Submission, debug: bool = False) -> int:
    """Stream logs until the call ends; Ctrl-C asks whether to stop the remote job."""
    import modal

    call = modal.FunctionCall.from_id(sub.call_id)
    logs = subprocess.Popen([sys.executable, "-m", "modal", "app", "logs", sub.app_name, *sub.env_args])
    outcome: dict[str, Any] = {}

    def wait() -> None:
        try:
            outcome["result"] = call.get()
        except BaseException as exc:  # the job's failure, reported below
            outcome["error"] = exc

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    try:
        while waiter.is_alive():
            waiter.join(0.5)
    except KeyboardInterrupt:
        if click.confirm("\nstop the remote job?", default=False, err=True):
            call.cancel()
            click.echo(f"stopped {sub.call_id}", err=True)
        else:
            click.echo("left running; follow it with:\n  " + "\n  ".join(sub.follow_commands()), err=True)
        return 130
    finally:
        logs.terminate()
    if "error" in outcome:
        click.echo(f"job failed: {type(outcome['error']).__name__}: {outcome['error']}", err=True)
        return 1
    result = outcome.get("result")
    if isinstance(result, dict) and result.get("status") == "permanent":
        if debug and result.get("traceback"):
            click.echo(result["traceback"], err=True, nl=False)
        click.echo(f"job failed, not retried: {result['error']}", err=True)
        return EXIT_BUG if result.get("bug") else 1
    if isinstance(result, dict) and "stages" in result:  # a pipeline's driver
        from launcher.runtime.pipeline.results import PipelineResult, Status

        pipeline = PipelineResult.from_json(result)
        click.echo(pipeline_report(pipeline), err=True)
        if pipeline.status == Status.FINISHED:
            return 0
        if pipeline.status == Status.STOPPED:
            return EXIT_STOPPED
        return EXIT_BUG if pipeline.has_bug else 1
    if isinstance(result, dict) and result.get("status") == "stopped":
        click.echo(f"job stopped (launch stop) after update {result.get('steps')}; checkpoint "
                   "committed", err=True)
        return EXIT_STOPPED
    click.echo(f"job finished: {result}", err=True)
    return 0


def pipeline_report(result: PipelineResult) -> str:
    """The driver's result: each stage's outcome and metrics, and the stage that failed."""
    from launcher.runtime.pipeline.results import Status
    from launcher.runtime.pipeline.stages import describe

    ended = result.status if result.status in (Status.FINISHED, Status.STOPPED) else "failed"
    where = result.failed_stage or next(
        (s.stage for s in result.stages if s.status == Status.STOPPED), None)
    lines = [f"job {ended}" + (f" in stage {where}" if where else "")]
    for stage in result.stages:
        error = f" ({stage.error})" if stage.error and stage.status != Status.FINISHED else ""
        lines.append(f"  {str(stage.stage):<10} {stage.status}{error}; {describe(stage.metrics)}")
    return "\n".join(lines)


def run_modal(app_path: Path, app_name: str, detach: bool, rerun: tuple[str, ...] = (),
              run: dict[str, Any] | None = None, debug: bool = False) -> int:
    """Submit and follow; the caller has checked credentials (`has_credentials`). `debug`:
    a permanent failure's traceback is printed too (Modal's logs show a retried one's)."""
    sub = submit(app_path, app_name, rerun, run)
    if detach:
        logs, stop, runs = sub.follow_commands()
        click.echo(f"run {sub.run_id or sub.call_id} (call {sub.call_id}) on app {sub.app_name}", err=True)
        click.echo("follow logs:  " + logs, err=True)
        click.echo("stop the run: " + stop, err=True)
        click.echo("its status:   " + runs, err=True)
        click.echo(sub.run_id or sub.call_id)
        return 0
    return follow(sub, debug)
