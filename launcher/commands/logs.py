"""`launch logs RUN [--stage S] [--follow]`: a run's logs, locally as the supervisor saved them,
on Modal as Modal keeps its function calls' logs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import click

from launcher.errors import RunError
from launcher.registry import Seen, Where, find, status_of
from launcher.runtime.runs.lookup import FolderSource

POLL_S = 0.5


def _stages(seen: Seen, stage: str | None) -> list[str]:
    stages = list(seen.record.stages)
    if stage is None:
        return stages
    if stage not in stages:
        raise RunError(f"--stage {stage}: run {seen.record.run} has no such stage "
                       f"(its stages: {', '.join(stages)})")
    return [stage]


def logs(prefix: str, stage: str | None, follow: bool, where: Where) -> int:
    seen = find(prefix, where)
    stages = _stages(seen, stage)
    if isinstance(seen.found.source, FolderSource):
        lines = _local(seen, stages, follow)
    else:
        lines = _modal(seen, stages, follow)
    for line in lines:
        click.echo(line)
    return 0


def _local(seen: Seen, stages: list[str], follow: bool) -> Iterator[str]:
    if not seen.record.logs:
        raise RunError(f"run {seen.record.run}: its record names no log folder")
    folder = Path(seen.record.logs)
    positions: dict[str, int] = {}
    headed: set[str] = set()
    while True:
        for name in stages:
            path = folder / f"{name}.log"
            try:
                with open(path, encoding="utf-8", errors="replace") as log:
                    log.seek(positions.get(name, 0))
                    text = log.read()
                    # Only whole lines: a line being written is shown when it ends.
                    whole = text[: text.rfind("\n") + 1] if follow else text
                    positions[name] = positions.get(name, 0) + len(whole.encode("utf-8"))
            except FileNotFoundError:
                continue
            if whole and len(stages) > 1 and name not in headed:
                headed.add(name)
                yield f"== {name} =="
            yield from whole.splitlines()
        if not follow or not _running(seen):
            return
        time.sleep(POLL_S)


def _running(seen: Seen) -> bool:
    """Re-read the record: still running (and alive)?"""
    source = seen.found.source
    try:
        from launcher.runtime.runs.record import RunRecord

        seen.found.record = RunRecord.parse(source.read(seen.found.run_path("run.json")))
    except (OSError, ValueError):
        return False
    return status_of(seen.found, time.time()) == "running"


def _modal(seen: Seen, stages: list[str], follow: bool) -> Iterator[str]:
    from launcher.backends.modal_runs import call_logs

    calls = [(name, call) for name in stages for call in seen.record.calls.get(name, [])]
    if not calls:
        raise RunError(f"run {seen.record.run}: no function call recorded"
                       + (f" for stage {stages[0]}" if len(stages) == 1 else "") + " yet")
    for name, call in calls:
        if len(calls) > 1:
            yield f"== {name} ({call}) =="
        yield from (line.rstrip("\n") for line in call_logs(call, follow))
