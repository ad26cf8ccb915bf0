"""The report's picture, drawn by matplotlib: one panel per metric (the objective first), one
line per run, over updates. Imported only by `launch report`: matplotlib is the `report` extra."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from launcher.report.history import History

WIDTH_IN, PANEL_IN, DPI = 10, 3, 100  # a PNG of 1000 x 300 pixels per panel


def chosen(histories: Sequence[History], metrics: Sequence[str]) -> list[str]:
    """The panels: the metrics asked for, else the objective(s) first, then every other metric."""
    if metrics:
        return list(dict.fromkeys(metrics))
    objectives = [h.objective[0] for h in histories if h.objective]
    rest = sorted({name for h in histories for name in h.series})
    return list(dict.fromkeys([*objectives, *rest]))


def figure(histories: Sequence[History], metrics: Sequence[str]) -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: never a window
    from matplotlib.figure import Figure

    names = chosen(histories, metrics)
    fig = Figure(figsize=(WIDTH_IN, PANEL_IN * len(names)), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(names), 1, squeeze=False)[:, 0]
    objectives = {h.objective for h in histories if h.objective}
    for ax, name in zip(axes, names, strict=True):
        for history in histories:
            if name in history.series:
                steps, values = history.series[name]
                ax.plot(steps, values, label=f"{history.run} ({history.job})", marker="." if len(steps) < 30 else None)
        goal = next((d for n, d in objectives if n == name), None)
        title = name if goal is None else f"{name} (objective{', ' + goal if goal else ''})"
        ax.set_title(title, loc="left")
        ax.set_xlabel("update")
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize="small")
    return fig


def png(fig: Any) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def html_page(histories: Sequence[History], image: bytes) -> str:
    """One self-contained page: the picture embedded, and a line per run."""
    rows = "".join(
        f"<tr><td>{html.escape(h.run)}</td><td>{html.escape(h.job)}</td>"
        f"<td>{max((s[-1] for s, _ in h.series.values() if s), default='')}</td>"
        f"<td>{html.escape(_last_objective(h))}</td></tr>"
        for h in histories)
    data = base64.b64encode(image).decode()
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>launch report</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.2em 1em;text-align:left}"
            "</style></head><body>\n<h1>launch report</h1>\n"
            "<table><tr><th>run</th><th>job</th><th>last update</th><th>objective</th></tr>"
            f"{rows}</table>\n<img alt=\"training curves\" src=\"data:image/png;base64,{data}\">\n"
            "</body></html>\n")


def _last_objective(history: History) -> str:
    if history.objective is None or history.objective[0] not in history.series:
        return ""
    name = history.objective[0]
    return f"{name} {history.series[name][1][-1]:.4g}"


def write(histories: Sequence[History], metrics: Sequence[str], out: Path) -> None:
    image = png(figure(histories, metrics))
    if out.suffix.lower() == ".html":
        out.write_text(html_page(histories, image), "utf-8")
    else:
        out.write_bytes(image)
