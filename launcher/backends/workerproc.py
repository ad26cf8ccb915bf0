"""A local worker process: started as soon as its environment is known, told to go later.

A worker's environment is fixed when it starts, as a container's is: the spec's `env:`,
launcher's own settings and the thread count. All of it is known once the spec's files are
read and merged, before the spec is validated and its app rendered; so the supervisor starts
the worker then, and the worker spends the wait on imports it needs anyway (see
`launcher.backends.worker`). `go` hands over what depends on the validated spec and the run:
the app's path, the stage to run (train, or a pipeline's prepare or evaluate), the volume,
this attempt's working copy of it, the run's id.

The worker dies with the supervisor, however the supervisor ends: it holds the read end of a
pipe nobody writes to (LAUNCH_LIFELINE_FD, see runtime/lifecycle/lifeline.py) and reads EOF
there when the write end, ours, closes.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from launcher.runtime.lifecycle import timeline
from launcher.runtime.settings import PREFIX, RuntimeSettings, current

ARGV = (sys.executable, "-m", "launcher.backends.worker", "-")


Spawn = Callable[[list[str], dict[str, str]], Any]


def spawn_process(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """A worker as its own process, its stdin a pipe for `go`, with the read end of a lifeline
    pipe. The write end lives as long as the returned object (closed with it, or by the kernel
    at our death)."""
    read, write = os.pipe()
    try:
        proc = subprocess.Popen(argv, env={**env, **RuntimeSettings(lifeline_fd=read).to_env()}, pass_fds=(read,),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1,
                                start_new_session=True)  # Ctrl-C reaches us; we forward it
    except BaseException:
        os.close(write)
        raise
    finally:
        os.close(read)
    weakref.finalize(proc, os.close, write)
    return proc


def worker_env(spec_env: Mapping[str, str], processes: int, attempt: int,
               debug: bool) -> dict[str, str]:
    threads = str(max(1, (os.cpu_count() or 1) // processes))
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    # The spec's env may not name LAUNCH_* (validation refuses it); dropped here as well, so
    # nothing a spec says can reach the runtime's own settings, fault injection included.
    declared = {k: v for k, v in spec_env.items() if not k.startswith(PREFIX)}
    # From the supervisor's own environment only: fault injection (tests) and the phase
    # timeline (bench/startup.py).
    own = current()
    settings = RuntimeSettings(fault=own.fault, fault_attempt=own.fault_attempt, timeline=own.timeline,
                               events=True, attempt=attempt, supervisor_pid=os.getpid(),
                               processes=processes, debug=debug)
    return {"OMP_NUM_THREADS": threads, **inherited, **declared, **settings.to_env(),
            "PYTHONUNBUFFERED": "1"}


class WorkerProcess:
    def __init__(self, spec_env: Mapping[str, str], processes: int, attempt: int,
                 debug: bool, spawn: Spawn = spawn_process) -> None:
        self.spec_env = dict(spec_env)  # what the worker was started with
        timeline.mark("spawn")
        self.proc = spawn(list(ARGV), worker_env(spec_env, processes, attempt, debug))

    def go(self, app: Path, settings: Mapping[str, str], stage: str = "train") -> None:
        """Run `stage` of `app`; `settings` are LAUNCH_* variables that depend on the validated
        spec and the run."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"app": str(app), "stage": stage,
                                              "env": dict(settings)}) + "\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass  # it died while starting: its exit code and output say why

    def kill(self) -> None:
        """Stop a worker that will not be used (the spec was refused, or a Ctrl-C came)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):  # unsent bytes to a dead process
                    stream.close()
