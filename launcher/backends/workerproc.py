"""A local worker process: started as soon as its environment is known, told to go later.

A worker's environment is fixed when it starts, as a container's is: the spec's `env:`,
launcher's own settings and the thread count. All of it is known once the spec's files are
read and merged, before the spec is validated and its app rendered; so the supervisor starts
the worker then, and the worker spends the wait on imports it needs anyway (see
`launcher.backends.worker`). `go` hands over what depends on the validated spec: the app's
path and where its volume and run files live.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from launcher.runtime import timeline

ARGV = (sys.executable, "-m", "launcher.backends.worker", "-")


def worker_env(spec_env: Mapping[str, str], processes: int, attempt: int,
               debug: bool) -> dict[str, str]:
    threads = str(max(1, (os.cpu_count() or 1) // processes))
    return {"OMP_NUM_THREADS": threads, **os.environ, **spec_env,
            "LAUNCH_EVENTS": "1", "PYTHONUNBUFFERED": "1", "LAUNCH_ATTEMPT": str(attempt),
            "LAUNCH_PROCESSES": str(processes), "LAUNCH_DEBUG": "1" if debug else "0"}


class WorkerProcess:
    def __init__(self, spec_env: Mapping[str, str], processes: int, attempt: int,
                 debug: bool) -> None:
        self.spec_env = dict(spec_env)  # what the worker was started with
        timeline.mark("spawn")
        self.proc = subprocess.Popen(
            ARGV, env=worker_env(spec_env, processes, attempt, debug), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            start_new_session=True)  # Ctrl-C reaches the supervisor, which forwards it

    def go(self, app: Path, settings: Mapping[str, str]) -> None:
        """Run `app`; `settings` are LAUNCH_* variables that depend on the validated spec."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"app": str(app), "env": dict(settings)}) + "\n")
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
