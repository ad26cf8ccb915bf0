"""Reading run records back: from a folder (a local volume) or through a volume's API (Modal).

A `Source` is one volume as a reader sees it: `listdir` and `read` of paths relative to its
top. `list_runs(source, jobs)` gives every readable record of those jobs, newest first;
`find(prefix, runs)` the one run whose id starts with `prefix`, or `RunNotFound` in one line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from launcher.runtime.runs.record import RECORD, RUNS, RunRecord


class RunNotFound(LookupError):
    """No run, or more than one, answers to the id given."""


class Source(Protocol):
    name: str  # the volume's name, for messages

    def listdir(self, path: str) -> list[str]:
        """The names in folder `path` ("" the top); [] when it does not exist."""
        ...

    def read(self, path: str) -> bytes:
        """The file's bytes; FileNotFoundError when it does not exist."""
        ...


class FolderSource:
    """A local volume: the committed folder `.launch/volumes/NAME/`."""

    def __init__(self, root: Path) -> None:
        self.root, self.name = root, root.name

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(p.name for p in (self.root / path).iterdir())
        except (NotADirectoryError, FileNotFoundError):
            return []

    def read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()


@dataclass
class Found:
    """A record and where it was read: its volume and its job's folder there."""

    record: RunRecord
    source: Source

    @property
    def job_path(self) -> str:
        return self.record.job

    def run_path(self, *parts: str) -> str:
        return "/".join((self.record.job, RUNS, self.record.run, *parts))


def jobs_on(source: Source) -> list[str]:
    """Every job folder on a volume that has runs."""
    return [job for job in source.listdir("") if not job.startswith((".", "@")) and source.listdir(f"{job}/{RUNS}")]


def list_runs(source: Source, jobs: Iterable[str] | None = None) -> list[Found]:
    """The records of `jobs` (None: every job on the volume), newest first; damaged ones skipped."""
    found = []
    for job in jobs_on(source) if jobs is None else jobs:
        for run in source.listdir(f"{job}/{RUNS}"):
            try:
                record = RunRecord.parse(source.read(f"{job}/{RUNS}/{run}/{RECORD}"))
            except (OSError, ValueError, TypeError, KeyError):
                continue  # not a run's folder (tracker files), or a record being replaced
            found.append(Found(record, source))
    return sorted(found, key=lambda f: (f.record.started, f.record.run), reverse=True)


def find(prefix: str, runs: Sequence[Found], where: str) -> Found:
    """The run whose id is `prefix`, or the only one that starts with it. `where`: what was
    searched, for the message."""
    exact = [f for f in runs if f.record.run == prefix]
    if len(exact) == 1:
        return exact[0]
    matches = exact or [f for f in runs if f.record.run.startswith(prefix)]
    if not matches:
        raise RunNotFound(f"{prefix}: no run with this id in {where}; `launch runs` lists them")
    if len(matches) > 1:
        shown = ", ".join(f"{f.record.run} ({f.record.job})" for f in matches[:5])
        more = f" and {len(matches) - 5} more" if len(matches) > 5 else ""
        raise RunNotFound(f"{prefix}: ambiguous, {len(matches)} runs start with it: {shown}{more}; "
                          "give more of the id")
    return matches[0]
