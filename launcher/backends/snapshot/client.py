"""The supervisor's side of the local snapshot: attempts restored from the run's zygote.

`Snapshots` keeps the run's zygote (the worker started early, or a new one if it died) for
every stage of the run, and starts each attempt there. The attempt comes back as a
`Restored`: the face of `subprocess.Popen` the supervisor uses (its output lines, its exit
code, signals), over the zygote's output, which every attempt shares, one at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.backends.snapshot import ATTEMPT, EXITED
from launcher.backends.workerproc import WorkerProcess
from launcher.runtime.events import PREFIX
from launcher.runtime.failures import EXIT_TRANSIENT
from launcher.runtime.settings import RuntimeSettings

if TYPE_CHECKING:
    from launcher.spec.model import JobSpec

# The work-copy name of a stage whose attempts restore a snapshot: the same folder for each
# (the session holds its path from stage 1), made afresh for each and thrown away after it.
MOUNT = "restored"


def mode(spec: JobSpec, stage: str) -> str:
    """The snapshot the stage's class takes: none, cpu or gpu."""
    found = spec.stage(stage)
    return spec.snapshot if found is None else found.snapshot


@dataclass(frozen=True)
class Class:
    """A stage's class as its snapshot needs it: its name, its snapshot, its LAUNCH_* settings."""

    stage: str
    snapshot: str
    settings: Mapping[str, str]

    def command(self, app: Path, attempt: int) -> dict[str, Any]:
        return {"snapshot": self.snapshot, "app": str(app), "stage": self.stage,
                "env": {**self.settings, **RuntimeSettings(attempt=attempt).to_env()}}


class Restored:
    """One attempt restored from a snapshot, as the supervisor sees a worker process."""

    def __init__(self, server: WorkerProcess) -> None:
        self.server = server
        self.pid: int | None = None
        self.returncode: int | None = None
        self.pending: int | None = None  # a signal sent before the attempt said its pid
        self.lock = threading.Lock()  # signals come from a timer thread and signal handlers
        self.stdout: Iterator[str] = self._lines()

    @property
    def proc(self) -> Restored:
        """What the supervisor reads and signals (a worker's `proc`)."""
        return self

    def _lines(self) -> Iterator[str]:
        stream = self.server.proc.stdout
        assert stream is not None
        for line in stream:
            event = _event(line)
            if event is None:
                yield line
            elif event["event"] == ATTEMPT:
                self._started(int(event["pid"]))
            else:
                self.returncode = int(event["code"])
                return
        # The zygote died (killed, or a bug): the attempt went with it.
        code = self.server.proc.wait()
        self.returncode = code if code < 0 else EXIT_TRANSIENT

    def _started(self, pid: int) -> None:
        with self.lock:
            self.pid, pending, self.pending = pid, self.pending, None
        if pending is not None:
            self.send_signal(pending)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self) -> int:
        for _ in self.stdout:  # what the caller did not read
            pass
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        with self.lock:
            if self.returncode is not None:
                return
            if self.pid is None:
                self.pending = sig
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _event(line: str) -> dict[str, Any] | None:
    """The fork server's own events; None for every other line."""
    if not line.startswith(PREFIX) or f'"{ATTEMPT}"' not in line and f'"{EXITED}"' not in line:
        return None
    event = json.loads(line[len(PREFIX):])
    return event if event.get("event") in (ATTEMPT, EXITED) else None


class Snapshots:
    """The run's zygote: made from the first stage's worker, used by every stage after."""

    def __init__(self) -> None:
        self.server: WorkerProcess | None = None

    def start(self, worker: WorkerProcess | None, fresh: Any, app: Path, attempt: int,
              stage: Class, ahead: Sequence[Class] = ()) -> Restored:
        """Attempt `attempt` of `stage`, restored from its class's snapshot. `worker` is one
        started early (it becomes the zygote when there is none yet); `fresh()` starts one.
        `ahead`: the run's later stages with a snapshot, taken while this attempt works."""
        server = self._server(worker, fresh)
        command = {**stage.command(app, attempt),
                   "ahead": [later.command(app, 1) for later in ahead]}
        assert server.proc.stdin is not None
        try:
            server.proc.stdin.write(json.dumps(command) + "\n")
            server.proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died while starting: its exit code and output say why
        return Restored(server)

    def _server(self, worker: WorkerProcess | None, fresh: Any) -> WorkerProcess:
        if self.server is not None and self.server.proc.poll() is not None:
            self.server.kill()
            self.server = None
        if self.server is None:
            self.server, worker = worker or fresh(), None
        if worker is not None:
            worker.kill()  # not needed: the zygote serves this stage too
        return self.server

    def close(self) -> None:
        """The run is over: the zygote goes, and with it every snapshot."""
        if self.server is not None:
            self.server.kill()
            self.server = None
