"""`launch SPEC --local`, in this process, with each attempt's worker forked rather than exec'd.

Everything is the product's own: the command (`launcher.commands.local_run.local`), the
supervisor (retries, the job's lock, working copies thrown away after each attempt), the
worker's `main`, the runtime and its fault points. Only the worker's start differs: a fork of
this interpreter, which has torch and accelerate imported already, instead of a fresh one
that imports them again (seconds on a small machine). That makes it affordable to run every
kill point of a job in CI; tests through a real `launch` process cover the process start.

Single-process runs only (Accelerate's launcher refuses to fork a process that has made an
Accelerator before, which this one may have).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

# Imported here once, inherited by every forked worker: what a worker would import anyway
# (torch builds its first optimizer through torch._dynamo, seconds on its own).
import accelerate  # noqa: F401
import modal  # noqa: F401
import torch
import torch._dynamo  # noqa: F401

from launcher.backends import worker
from launcher.backends.local import Options
from launcher.cli import main
from launcher.commands import local_run
from runjob import Run


class ForkedWorker:
    """A worker forked from this process, with the face of subprocess.Popen the supervisor uses."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        life_read, self.lifeline = os.pipe()  # as spawn_process gives a real worker
        out_read, out_write = os.pipe()
        in_read, in_write = os.pipe()  # its stdin: the supervisor's `go` comes there
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self.lifeline)
            os.close(out_read)
            os.close(in_write)
            self._child(argv, {**env, "LAUNCH_LIFELINE_FD": str(life_read)}, out_write, in_read)
        os.close(life_read)
        os.close(out_write)
        os.close(in_read)
        self.stdout: IO[str] = os.fdopen(out_read, "r")
        self.stdin: IO[str] = os.fdopen(in_write, "w")
        self.returncode: int | None = None

    @staticmethod
    def _child(argv: list[str], env: dict[str, str], out: int, into: int) -> None:
        code = 70
        try:
            os.setsid()  # its own session, as start_new_session gives a real worker
            os.dup2(into, 0)
            os.close(into)
            sys.stdin = open(0, closefd=False)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.close(out)
            sys.stdout = open(1, "w", buffering=1, closefd=False)
            sys.stderr = open(2, "w", buffering=1, closefd=False)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # not the supervisor's
                signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
            os.environ.clear()
            os.environ.update(env)
            torch.set_num_threads(1)  # OpenMP's pool does not survive a fork
            code = worker.main(argv[3:])
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _reap(self, flags: int) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, flags)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                os.close(self.lifeline)
        return self.returncode

    def poll(self) -> int | None:
        return self._reap(os.WNOHANG)

    def wait(self) -> int:
        code = self._reap(0)
        assert code is not None
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def run_forked(spec: Path, fault: str | None = None, *args: str) -> Run:
    """`launch SPEC --local --volumes-dir SPEC_DIR/volumes` with LAUNCH_FAULT=`fault`."""
    return launch_forked(spec, *args, env={"LAUNCH_FAULT": fault} if fault else None)


def launch_forked(spec: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                  volumes: Path | None = None) -> Run:
    """runjob.launch_local in this process: `launch SPEC --local --volumes-dir VOLUMES ARGS`
    through the CLI, run in `cwd` (default: where the spec is; VOLUMES default: its volumes/),
    with `env` over this process's environment (LAUNCH_FAULT only from `env`), each worker
    forked. What the run changed in this process's environment, working directory, import path
    and modules is undone after it."""
    cwd = cwd or spec.parent
    volumes = volumes or spec.parent / "volumes"
    saved_env, saved_cwd, saved_path = dict(os.environ), os.getcwd(), list(sys.path)
    saved_modules, saved_local = set(sys.modules), local_run.local
    os.environ.pop("LAUNCH_FAULT", None)
    os.environ.update({"PROBE_DIR": str(spec.parent), **(env or {})})
    os.chdir(cwd)  # as `launch` run there (`python -m` puts it first): the user's modules are found here
    sys.path.insert(0, str(cwd))
    local_run.local = _forking
    output = io.StringIO()
    try:
        with contextlib.redirect_stderr(output), contextlib.redirect_stdout(output):
            code = main([str(spec), "--local", "--volumes-dir", str(volumes), *args])
    finally:
        local_run.local = saved_local
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        sys.path[:] = saved_path
        _forget_modules_under(cwd, set(sys.modules) - saved_modules)
    return Run(code, output.getvalue(), volumes)


def _forget_modules_under(folder: Path, names: set[str]) -> None:
    """The user's modules the run imported from `folder`: a later run's of the same name (another
    test's recipe) must be imported afresh, in the supervisor and in the workers it forks."""
    for name in names:
        where = getattr(sys.modules.get(name), "__file__", None)
        if name.partition(".")[0] != "launcher" and where and Path(where).resolve().is_relative_to(
                folder.resolve()):  # the launcher's own stay: one copy of each class in this process
            del sys.modules[name]


def _forking(job: str, sets: tuple[str, ...], options: Options, **kwargs: Any) -> int:
    """The local command, with its workers forked from this process."""
    return _local(job, sets, replace(options, spawn=_spawn), **kwargs)


_local = local_run.local


def _spawn(argv: list[str], env: dict[str, str]) -> Any:
    return ForkedWorker(argv, env)
