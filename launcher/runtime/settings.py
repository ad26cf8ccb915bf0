"""The runtime's own settings: every LAUNCH_* variable a worker, container or driver reads.

`RuntimeSettings.from_env(environ)` parses them once, at an entry (the local worker, the
generated app's classes, the pipeline driver), and the result is passed down; `to_env()` is how
the local supervisor writes them (backends/local.py, backends/workerproc.py), so each name is
spelled here and nowhere else. On Modal none is set: every field is None (or False) and each
reader falls back to the spec's value, as the fields' comments say.

A spec's `env:` may not name LAUNCH_* (`spec/rules.py`, `PREFIX`), and the local worker drops
any it inherits (`backends/workerproc.py`).

A few process-wide readers look up their one variable by its name here (`ENV`), without
parsing the rest: `timeline.mark` and `events.emit`, which run often.

Standard library only: the CLI side imports it too.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "LAUNCH_"  # every name below starts with it; a spec's env may name none


def _var(name: str) -> Any:
    return field(default=None, metadata={"env": name})


def _flag(name: str) -> Any:
    return field(default=False, metadata={"env": name})


@dataclass(frozen=True)
class RuntimeSettings:
    """What the supervisor tells a worker (None / False: not set, as on Modal).

    `code_root` and `repo_root` are both the repository locally, but are not the same setting:
    `code_root` is where the user's modules are imported from, and is absent with `--shipped`
    (the shipped tree is then the working directory, and must win over the live repository);
    `repo_root` is where a pipeline stage's declared inputs are read and the app finds its
    image's paths, the live repository even with `--shipped`, and set only for a pipeline's
    stages (a single job's app finds its Dockerfile's folder itself).
    """

    # Set by backends/local.py when the run's settings are known (the worker's `go`):
    volume: Path | None = _var("LAUNCH_VOLUME")  # the local volume's committed folder
    checkpoint_dir: Path | None = _var("LAUNCH_CHECKPOINT_DIR")  # this attempt's working copy [checkpoint.mount]
    run_dir: Path | None = _var("LAUNCH_RUN_DIR")  # tracker logs, kept locally [a temp folder, mirrored]
    run_id: str | None = _var("LAUNCH_RUN_ID")  # the run's id: the call id in the job's lease [Modal's]
    lease: str | None = _var("LAUNCH_LEASE")  # the pipeline driver's call id a stage works under
    code_root: Path | None = _var("LAUNCH_CODE_ROOT")  # where the spec's modules are imported from
    repo_root: Path | None = _var("LAUNCH_REPO_ROOT")  # a stage's inputs, the image's paths [cwd]
    workdir: Path | None = _var("LAUNCH_WORKDIR")  # `--shipped`: run from the shipped tree
    control_dir: Path | None = _var("LAUNCH_CONTROL_DIR")  # where `launch stop` leaves requests [a modal.Dict]
    # Set by backends/workerproc.py when the worker process starts:
    processes: int | None = _var("LAUNCH_PROCESSES")  # processes to fork [compute.gpu_count]
    events: bool = _flag("LAUNCH_EVENTS")  # emit `@@launch` events for the supervisor
    attempt: int | None = _var("LAUNCH_ATTEMPT")  # the attempt's number, for fault injection [1]
    supervisor_pid: int | None = _var("LAUNCH_SUPERVISOR_PID")  # the worker dies with its supervisor
    lifeline_fd: int | None = _var("LAUNCH_LIFELINE_FD")  # ... and when this pipe's write end closes
    debug: bool = _flag("LAUNCH_DEBUG")  # print an unexpected error's traceback
    # From the supervisor's own environment (tests, benches), passed on to its workers:
    fault: str | None = _var("LAUNCH_FAULT")  # kill or interrupt at a named point (runtime/faults.py)
    fault_attempt: int | None = _var("LAUNCH_FAULT_ATTEMPT")  # the attempt it fires in [1]
    timeline: Path | None = _var("LAUNCH_TIMELINE")  # a file for start-up marks (bench/startup.py)
    master_port: int | None = _var("LAUNCH_MASTER_PORT")  # torch.distributed's port [29500]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RuntimeSettings:
        """The settings in `environ`; an empty variable is not set, nor is a number that is not
        one (a stray LAUNCH_MASTER_PORT=x in a user's shell never stops `launch`)."""
        found: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f.metadata["env"])
            if f.type == "bool":
                found[f.name] = raw == "1"
            elif raw:
                try:
                    found[f.name] = _parse(f.type, raw)
                except ValueError:
                    pass
        return cls(**found)

    def to_env(self) -> dict[str, str]:
        """The variables that say these settings (those set only)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is True:
                out[f.metadata["env"]] = "1"
            elif value is not None and value is not False:
                out[f.metadata["env"]] = str(value)
        return out

    def mount(self, spec_mount: str) -> Path:
        """The volume's mount as this process sees it: its working copy, else `checkpoint.mount`."""
        return self.checkpoint_dir or Path(spec_mount)

    def runs(self, job: str) -> Path:
        """Where tracker files are written: the run's folder, else a temp folder for `job`."""
        return self.run_dir or Path(tempfile.gettempdir()) / "launch-runs" / job


def _parse(kind: str, raw: str) -> Any:
    if "Path" in kind:
        return Path(raw)
    if "int" in kind:
        return int(raw)
    return raw


def current() -> RuntimeSettings:
    """This process's settings, parsed now (a worker learns its run's settings late, at `go`)."""
    return RuntimeSettings.from_env(os.environ)


ENV = {f.name: f.metadata["env"] for f in dataclasses.fields(RuntimeSettings)}
