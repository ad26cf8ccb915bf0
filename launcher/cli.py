"""The `launch` command line. click parses; functions in launcher.commands do the work.

Heavy imports (torch, accelerate, modal) happen only inside the commands that run a job, so
`check` and `--dry-run` stay fast.
"""

from __future__ import annotations

import gc
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from launcher import __version__
from launcher.errors import EXIT_BUG, LauncherError, printable
from launcher.runtime.lifecycle import timeline

EXIT_USER, EXIT_USAGE, EXIT_INTERRUPT = 1, 2, 130
F = TypeVar("F", bound=Callable[..., object])


class _DefaultToRun(click.Group):
    """`launch JOB.yaml [opts]` is `launch run JOB.yaml [opts]`; options may come first too."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            _refuse_misspelt_command(args[0], list(self.commands))
            args = ["run", *args]
        return super().parse_args(ctx, args)


def _refuse_misspelt_command(word: str, commands: list[str]) -> None:
    """`launch chek x.yaml` is a usage error that names the command meant, not a run of a spec
    called `chek`: a word close to a command that is no file and no spec's name."""
    from launcher.spec.refs import closest

    if word.startswith("-") or word.endswith((".yaml", ".yml")) or Path(word).exists():
        return
    meant = closest(word, [c for c in commands if c != "run"])
    if meant is not None:
        raise click.UsageError(f"no command {word!r}; did you mean {meant!r}?")


def debug_option(expose: bool = False) -> Callable[[F], F]:
    """`--debug`: the top-level handler reads it from the arguments, since it reports errors
    from before a command runs too; only `run` passes it on (to its workers)."""
    return click.option("--debug", is_flag=True, expose_value=expose,
                        help="Show tracebacks of internal errors.")


set_option = click.option("--set", "sets", multiple=True, metavar="PATH=VALUE",
                          help="Override a spec value, YAML-typed, e.g. --set train.steps=500.")


@click.group(cls=_DefaultToRun, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="launch")
def cli() -> None:
    """Run a YAML job spec on Modal (default), locally (--local) or not at all (--dry-run).

    \b
      launch jobs/ppo.yaml               deploy and run on Modal
      launch jobs/ppo.yaml --local       run the same app on this machine
      launch --dry-run jobs/ppo.yaml     print the generated app and a plan
      launch check jobs/*.yaml           validate specs
      launch init NAME                   set up this repository, write a starter spec
      launch diff OLD.yaml NEW.yaml      what a spec change does to the job
      launch runs [--local]              the runs, newest first; logs, pull, rerun RUN
      launch stop RUN [--now]            stop a run (final checkpoint first)
      launch report RUN...               training curves of runs, as a picture
    """


@cli.command("run")
@click.argument("job", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Print the generated app (stdout) and plan (stderr); run nothing.")
@click.option("--local", is_flag=True, help="Run the app on this machine; no Modal account needed.")
@set_option
@click.option("--out", type=click.Path(dir_okay=False), help="With --dry-run: write the app here (only if it changed).")
@click.option("--explain", is_flag=True,
              help="With --dry-run: show each resolved field, where its value came from, and costs.")
@click.option("--use-local-code", is_flag=True, help="Put the local launcher and recipe code in the image, not a git commit.")
@click.option("--processes", type=click.IntRange(1, 64), default=1, show_default=True,
              help="With --local: data-parallel processes through Accelerate (gloo on CPU).")
@click.option("--preempt-after", type=click.FloatRange(0, min_open=True), metavar="SECONDS",
              help="With --local: send the worker SIGINT after SECONDS, as a Modal preemption.")
@click.option("--volumes-dir", type=click.Path(file_okay=False, path_type=Path),
              help="With --local: where volumes live (default .launch/volumes in the repo).")
@click.option("--fresh", is_flag=True, help="With --local: move the volume's checkpoints aside and start from step 0.")
@click.option("--shipped", is_flag=True,
              help="With --local: run from the code the image gets (the pinned commit with "
                   "image.code: git), laid out in .launch/shipped/ as the container's working directory.")
@click.option("--detach", is_flag=True, help="On Modal: return at once with the call id and how to follow it.")
@click.option("--env", "environment", metavar="NAME",
              help="The Modal Environment to deploy and run in (overrides the spec's environment:).")
@click.option("--rerun", type=click.Choice(["prepare"]), multiple=True, metavar="STAGE",
              help="Run a finished pipeline stage again though its inputs are unchanged (only "
                   "prepare is ever skipped: train resumes and evaluate always runs).")
@debug_option(expose=True)
def run_cmd(job: str, dry_run: bool, local: bool, sets: tuple[str, ...], out: str | None,
            explain: bool, use_local_code: bool, processes: int, preempt_after: float | None,
            volumes_dir: Path | None, fresh: bool, detach: bool, environment: str | None,
            rerun: tuple[str, ...], debug: bool, shipped: bool = False) -> int:
    """Run JOB (a YAML spec)."""
    if environment is not None:  # a string whatever it reads like in YAML (`--env 2024`)
        sets = (*sets, f"environment={json.dumps(environment)}")
    if dry_run and local:
        raise click.UsageError("--dry-run and --local exclude each other")
    if out and not dry_run:
        raise click.UsageError("--out needs --dry-run")
    if explain and not dry_run:
        raise click.UsageError("--explain needs --dry-run")
    if not local and (processes > 1 or preempt_after or volumes_dir or fresh):
        raise click.UsageError("--processes, --preempt-after, --volumes-dir and --fresh need --local "
                               "(on Modal, set checkpoint.resume: never or use a new volume)")
    if shipped and not local:
        raise click.UsageError("--shipped needs --local (it rehearses what the image runs)")
    if detach and (local or dry_run):
        raise click.UsageError("--detach is for runs on Modal")
    if rerun and dry_run:
        raise click.UsageError("--rerun is for runs (on Modal or --local)")
    if not dry_run and _is_sweep(job, sets):
        if fresh or preempt_after or shipped or rerun or detach or use_local_code:
            raise click.UsageError("--fresh, --preempt-after, --shipped, --rerun, --detach and "
                                   "--use-local-code are not for sweeps (a sweep resumes; give "
                                   "it another name to start over)")
        from launcher.commands.sweep_run import sweep
        from launcher.extras import require_optuna, require_runtime

        require_optuna()
        if local:
            require_runtime("--local")
        from launcher.backends.local import Options
        return sweep(job, sets, local, Options(processes=processes, volumes_dir=volumes_dir,
                                               debug=debug))
    if dry_run:
        from launcher.commands.render_app import dry_run as do_dry_run
        return do_dry_run(job, sets, out, use_local_code, explain)
    if local:
        from launcher.extras import require_runtime
        require_runtime("--local")
        from launcher.backends.local import Options
        from launcher.commands.local_run import local as run_local
        return run_local(job, sets, Options(processes=processes, preempt_after=preempt_after,
                                            volumes_dir=volumes_dir, resume=not fresh, debug=debug,
                                            rerun=rerun), shipped=shipped, use_local_code=use_local_code)
    from launcher.commands.modal_run import remote
    return remote(job, sets, use_local_code, detach, rerun, debug)


def _is_sweep(job: str, sets: tuple[str, ...]) -> bool:
    """Whether JOB is a sweep spec (a `sweep:` section, after its bases and --set)."""
    from launcher.spec.compose import compose
    from launcher.spec.sweep import is_sweep

    return is_sweep(compose(Path(job), tuple(sets), display=job))


@cli.command("check")
@click.argument("jobs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@set_option
@debug_option()
def check_cmd(jobs: tuple[str, ...], sets: tuple[str, ...]) -> int:
    """Validate job specs; every problem is reported as FILE:LINE:COL: $.path: message."""
    from launcher.commands.check import check
    return check(jobs, sets)


@cli.command("init")
@click.argument("name", required=False)
@click.option("--recipe", default="launcher.recipes.ppo:PPO", show_default=True, metavar="MODULE:CLASS",
              help="The training recipe the spec runs.")
@click.option("--out", type=click.Path(dir_okay=False), help="Where to write it (default jobs/NAME.yaml).")
@click.option("--dockerfile", default="Dockerfile.cuda", show_default=True, metavar="PATH",
              help="The image's Dockerfile, relative to the repository root; written if missing.")
@debug_option()
def init_cmd(name: str | None, recipe: str, out: str | None, dockerfile: str) -> int:
    """Set up this repository for launcher and write a starter spec NAME.

    \b
    Writes what is missing, never over a file: jobs/NAME.yaml (without NAME, no spec),
    schemas/job.schema.json (for editors), the Dockerfile, and .launch/ in .gitignore.
    """
    if out is not None and name is None:
        raise click.UsageError("--out needs NAME")
    from launcher.commands.init import init
    return init(name, recipe, out, dockerfile)


@cli.command("diff")
@click.argument("old", type=click.Path(dir_okay=False))
@click.argument("new", type=click.Path(dir_okay=False))
@set_option
@click.option("--exit-code", is_flag=True, help="Exit 1 when they differ (like git diff --exit-code).")
@debug_option()
def diff_cmd(old: str, new: str, sets: tuple[str, ...], exit_code: bool) -> int:
    """Diff two specs as resolved (defaults, bases, --set) and as generated apps."""
    from launcher.commands.diff import diff
    return diff(old, new, sets, exit_code)


def where_options(func: F) -> F:
    """Where runs are read: `--local` (with `--volumes-dir`), else Modal (`--env`)."""
    func = click.option("--env", "environment", metavar="NAME",
                        help="On Modal: the Environment the jobs' volumes are in.")(func)
    func = click.option("--volumes-dir", type=click.Path(file_okay=False, path_type=Path),
                        help="With --local: where volumes live (default .launch/volumes in the repo).")(func)
    return click.option("--local", is_flag=True, help="Runs made with --local, on this machine.")(func)


def _where(local: bool, volumes_dir: Path | None, environment: str | None) -> object:
    from launcher.registry import Where

    if volumes_dir is not None and not local:
        raise click.UsageError("--volumes-dir needs --local")
    return Where(local, volumes_dir, environment)


@cli.command("runs")
@click.argument("jobs", nargs=-1, metavar="[SPEC.yaml | NAME]...")
@click.option("--all", "show_all", is_flag=True, help=f"Every run, not only the newest {20}.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array, one object per run.")
@where_options
@debug_option()
def runs_cmd(jobs: tuple[str, ...], show_all: bool, as_json: bool, local: bool,
             volumes_dir: Path | None, environment: str | None) -> int:
    """List runs, newest first: status, attempts, newest checkpoint, objective, cost, commit."""
    from launcher.commands.runs import list_runs
    return list_runs(jobs, _where(local, volumes_dir, environment), show_all, as_json)  # type: ignore[arg-type]


@cli.command("logs")
@click.argument("run")
@click.option("--stage", metavar="STAGE", help="One stage's logs (default: every stage's, in order).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the run ends.")
@where_options
@debug_option()
def logs_cmd(run: str, stage: str | None, follow: bool, local: bool, volumes_dir: Path | None,
             environment: str | None) -> int:
    """Print a run's logs (RUN: its id, or a unique start of it)."""
    from launcher.commands.logs import logs
    return logs(run, stage, follow, _where(local, volumes_dir, environment))  # type: ignore[arg-type]


@cli.command("pull")
@click.argument("target", metavar="RUN|SPEC.yaml")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--step", type=click.IntRange(0), help="The checkpoint after this many updates.")
@click.option("--best", is_flag=True, help="The best checkpoint by the recipe's objective.")
@click.option("--latest", is_flag=True, help="The newest checkpoint (the default).")
@where_options
@debug_option()
def pull_cmd(target: str, dest: Path, step: int | None, best: bool, latest: bool, local: bool,
             volumes_dir: Path | None, environment: str | None) -> int:
    """Copy a checkpoint's files to DEST, each verified against its manifest's digest."""
    if sum((step is not None, best, latest)) > 1:
        raise click.UsageError("--step, --best and --latest exclude each other")
    from launcher.commands.pull import pull
    return pull(target, dest, step, best, _where(local, volumes_dir, environment))  # type: ignore[arg-type]


@cli.command("rerun")
@click.argument("run")
@where_options
@debug_option(expose=True)
def rerun_cmd(run: str, local: bool, volumes_dir: Path | None, environment: str | None,
              debug: bool) -> int:
    """Run a recorded run's resolved spec again, at its recorded commit, from step 0."""
    from launcher.commands.rerun import rerun
    return rerun(run, _where(local, volumes_dir, environment), debug)  # type: ignore[arg-type]
@cli.command("stop")
@click.argument("run")
@click.option("--now", is_flag=True, help="Stop at once, without a final checkpoint (kill the worker; "
                                          "on Modal cancel the call).")
@click.option("--volumes-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where local runs keep their volumes (default .launch/volumes in the repo).")
@click.option("--env", "environment", metavar="NAME", help="On Modal: the run's Modal Environment.")
@click.option("--job", type=click.Path(dir_okay=False), metavar="JOB.yaml",
              help="On Modal with --now: the run's spec, to release its lease of the job at once.")
@debug_option()
def stop_cmd(run: str, now: bool, volumes_dir: Path | None, environment: str | None,
             job: str | None) -> int:
    """Stop RUN: after its current update, with a final checkpoint (graceful), or --now.

    RUN is a local run's id (or a unique prefix of it) or a Modal call id (fc-...). The run
    ends as stopped: not retried, no later stage, the job free for the next launch.
    """
    from launcher.commands.stop import stop
    return stop(run, now, volumes_dir, environment, job)


@cli.command("report")
@click.argument("runs", nargs=-1, required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.png"),
              show_default=True, help="The picture: FILE.png, or FILE.html (one self-contained page).")
@click.option("--metric", "metrics", multiple=True, metavar="NAME",
              help="A metric to draw (repeatable); default the objective, then every metric.")
@click.option("--volumes-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where local runs keep their volumes (default .launch/volumes in the repo).")
@debug_option()
def report_cmd(runs: tuple[str, ...], out: Path, metrics: tuple[str, ...], volumes_dir: Path | None) -> int:
    """Draw the objective and metrics of RUNS over updates (needs the report extra: matplotlib)."""
    from launcher.commands.report import report
    return report(runs, out, metrics, volumes_dir)


@cli.command("schema")
@debug_option()
def schema_cmd() -> int:
    """Print the JSON Schema of job specs."""
    from launcher.resources import read_text
    click.echo(read_text("schemas", "job.schema.json"), nl=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: one handler maps every outcome to an exit code and one clear message.

    Without `argv` it is the `launch` program, and the process ends next: what was made so far
    is frozen (`gc.freeze`), so the interpreter's last collections skip it (40 ms of an exit)."""
    args = sys.argv[1:] if argv is None else argv
    timeline.mark("command")
    code = _handled(args)
    if argv is None:
        gc.freeze()
    return code


def _handled(args: list[str]) -> int:
    try:
        code = cli.main(args=args, prog_name="launch", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE if isinstance(exc, click.UsageError) else EXIT_USER
    except (click.Abort, KeyboardInterrupt):
        click.echo("launch: interrupted", err=True)
        return EXIT_INTERRUPT
    except LauncherError as exc:  # one line per problem, none of them able to hide a secret
        click.echo("\n".join(printable(line) for line in str(exc).split("\n")), err=True)
        return exc.exit_code
    except Exception as exc:  # a bug in launcher, not the user's input
        if "--debug" in args:
            traceback.print_exc()
        click.echo(printable(f"launch: internal error (a bug in launcher): {type(exc).__name__}: {exc}"
                             + ("" if "--debug" in args else "; rerun with --debug for the traceback")),
                   err=True)
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
