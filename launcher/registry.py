"""Where the CLI finds run records: the local volumes (`.launch/volumes`, `--volumes-dir`), or
the Modal volumes of the specs given (else of every spec in `jobs/`), through Modal's Volume API.

`runs(targets, where)` gives every run of the jobs named, with its status as seen now (a
`running` record whose coordinator is gone is `dead`); `find(prefix, where)` the one run a
command names. Records are read by launcher.runtime.runs.lookup; this module only decides
which volumes and jobs to read, and how to tell whether a coordinator is alive.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher.errors import RunError
from launcher.runtime.runs import liveness, lookup
from launcher.runtime.runs.lookup import FolderSource, Found, RunNotFound


@dataclass(frozen=True)
class Where:
    """Local (`volumes`: the folder of local volumes) or Modal (`environment`, if any)."""

    local: bool
    volumes: Path | None = None
    environment: str | None = None


@dataclass
class Seen:
    """A run as a command shows it: its record, where it was read, its status now."""

    found: Found
    status: str

    @property
    def record(self) -> Any:
        return self.found.record


def local_volumes(where: Where) -> Path:
    if where.volumes is not None:
        return where.volumes
    from launcher.backends.local import local_state
    from launcher.gitinfo import nearest_work_tree

    return local_state(nearest_work_tree(Path.cwd()) or Path.cwd()) / "volumes"


def _specs(targets: Sequence[str], where: Where) -> list[tuple[str, str, str | None]]:
    """(volume, job, environment) for each target: a spec file, or a job's name."""
    wanted = []
    for target in targets:
        if target.endswith((".yaml", ".yml")) or Path(target).is_file():
            from launcher.load import load_spec

            spec = load_spec(target).spec
            wanted.append((spec.checkpoint.volume, spec.name, where.environment or spec.environment))
        else:
            wanted.extend(_named(target, where))
    return wanted


def _named(name: str, where: Where) -> list[tuple[str, str, str | None]]:
    if where.local:
        root = local_volumes(where)
        found = [(v.name, name, None) for v in _volume_dirs(root) if (v / name).is_dir()]
        if not found:
            raise RunError(f"{name}: no job of this name on the local volumes in {root}; "
                           "give its spec file, or `launch runs --local` to list them all")
        return found
    found = [s for s in _repo_specs(where) if s[1] == name]
    if not found:
        raise RunError(f"{name}: no spec in jobs/ names this job; give its spec file (SPEC.yaml)")
    return found


def _repo_specs(where: Where) -> list[tuple[str, str, str | None]]:
    """Every spec in the repository's jobs/ folder that loads; the others are skipped."""
    from launcher.errors import LauncherError
    from launcher.gitinfo import nearest_work_tree
    from launcher.load import load_spec

    root = nearest_work_tree(Path.cwd()) or Path.cwd()
    found = []
    for path in sorted((root / "jobs").glob("*.y*ml")):
        try:
            spec = load_spec(path).spec
        except LauncherError:
            continue
        found.append((spec.checkpoint.volume, spec.name, where.environment or spec.environment))
    return found


def _volume_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("@", ".")))


def sources(targets: Sequence[str], where: Where) -> list[tuple[lookup.Source, list[str] | None]]:
    """Each volume to read, with the jobs to read there (None: all of them)."""
    if where.local:
        root = local_volumes(where)
        if not targets:
            return [(FolderSource(v), None) for v in _volume_dirs(root)]
        return [(FolderSource(root / volume), [job]) for volume, job, _ in _specs(targets, where)]
    from launcher.backends import modal_runs

    wanted = _specs(targets, where) if targets else _repo_specs(where)
    if not wanted:
        raise RunError("no spec in jobs/ to find runs for: give spec files (SPEC.yaml), "
                       "or --local for local runs")
    by_volume: dict[tuple[str, str | None], list[str]] = {}
    for volume, job, env in wanted:
        by_volume.setdefault((volume, env), []).append(job)
    return [(modal_runs.VolumeSource(volume, env), jobs) for (volume, env), jobs in by_volume.items()]


def status_of(found: Found, now: float) -> str:
    record = found.record
    if record.status != "running":
        return record.status
    if isinstance(found.source, FolderSource):
        alive: bool | None = liveness.local_alive(record, found.source.root / record.job, now)
    else:
        from launcher.backends import modal_runs

        alive = modal_runs.call_alive(record)
    return liveness.effective_status(record, alive)


def runs(targets: Sequence[str], where: Where) -> list[Seen]:
    """Every run of the jobs named (all jobs when none is), newest first."""
    now = time.time()
    found: list[Found] = []
    for source, jobs in sources(targets, where):
        found.extend(lookup.list_runs(source, jobs))
    found.sort(key=lambda f: (f.record.started, f.record.run), reverse=True)
    return [Seen(f, status_of(f, now)) for f in found]


def describe(where: Where) -> str:
    return f"the local volumes in {local_volumes(where)}" if where.local else \
        "the Modal volumes of the specs in jobs/"


def find(prefix: str, where: Where, targets: Sequence[str] = ()) -> Seen:
    """The run `prefix` names (its id, or a unique start of it), or RunError in one line."""
    if not prefix:
        raise RunError("RUN: give a run's id (or the start of it); `launch runs` lists them")
    now = time.time()
    found: list[Found] = []
    for source, jobs in sources(targets, where):
        found.extend(lookup.list_runs(source, jobs))
    try:
        one = lookup.find(prefix, found, describe(where))
    except RunNotFound as exc:
        raise RunError(str(exc)) from None
    return Seen(one, status_of(one, now))


def sweep_target(targets: Sequence[str]) -> tuple[str, str, str | None] | None:
    """(volume, sweep's job name, environment) when the one target is a sweep spec, else None."""
    if len(targets) != 1 or not targets[0].endswith((".yaml", ".yml")):
        return None
    from launcher.load import load_spec

    loaded = load_spec(targets[0])
    if loaded.sweep is None:
        return None
    spec = loaded.spec
    return spec.checkpoint.volume, spec.name, spec.environment


def sweep_trials(volume: str, name: str, environment: str | None, where: Where) -> list[Seen]:
    """The runs of sweep `name`'s trials (their records name it), newest first."""
    now = time.time()
    if where.local:
        source: lookup.Source = FolderSource(local_volumes(where) / volume)
    else:
        from launcher.backends import modal_runs

        source = modal_runs.VolumeSource(volume, where.environment or environment)
    found = [f for f in lookup.list_runs(source, None) if (f.record.sweep or {}).get("name") == name]
    return [Seen(f, status_of(f, now)) for f in found]

