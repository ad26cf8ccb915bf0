"""`launch report RUN... [--out FILE.png|FILE.html] [--metric NAME]...`: training curves."""

from __future__ import annotations

from pathlib import Path

import click

from launcher import gitinfo
from launcher.backends.local import local_state
from launcher.errors import LauncherError, RunError
from launcher.extras import missing
from launcher.runtimeship import install_hint

SUFFIXES = (".png", ".html")


def report(runs: tuple[str, ...], out: Path, metrics: tuple[str, ...], volumes_dir: Path | None) -> int:
    if out.suffix.lower() not in SUFFIXES:
        raise RunError(f"{out}: --out must end in .png or .html")
    if missing(("matplotlib",)):
        raise LauncherError(f"launch report: matplotlib is not installed; install the report "
                            f"extra with: {install_hint('report')}")
    from launcher.report import draw, history

    volumes = volumes_dir or local_state(gitinfo.find_repo(Path.cwd()).root) / "volumes"
    histories = [history.read(folder) for folder in history.find_runs(volumes, runs)]
    names = draw.chosen(histories, metrics)
    absent = [name for name in names if not any(name in h.series for h in histories)]
    if absent or not names:
        raise RunError(f"{', '.join(runs)}: no metric {', '.join(absent)} in these runs" if absent
                       else f"{', '.join(runs)}: these runs logged no metrics yet")
    try:
        draw.write(histories, names, out)
    except OSError as exc:
        raise RunError(f"{out}: cannot write the report: {exc.strerror}") from None
    click.echo(f"wrote {out}: {len(names)} metric(s) of {len(histories)} run(s)", err=True)
    return 0
