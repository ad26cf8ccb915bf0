"""`launch report`: training curves of runs from their metrics.jsonl, as a PNG or a
self-contained HTML page; without matplotlib, one line; unknown runs and bad files, one line."""

from __future__ import annotations

import base64
import io
import json
import re
import sys
from pathlib import Path

import pytest
from matplotlib import image as mpimg
from runjob import cli, fresh_cli


ROOT = Path(__file__).resolve().parents[1]
RUN_A, RUN_B = "20261208-010203-a1b2", "20261208-020304-c3d4"


def lay_out(volumes: Path, run: str, job: str, losses: list[float], objective: bool = True) -> Path:
    """A run's folder as the loop and the coordinator leave it on the volume."""
    folder = volumes / "vol" / job / "runs" / run
    folder.mkdir(parents=True)
    rows = [{"step": 10 * (i + 1), "time": 1765000000 + i,
             "metrics": {"train/loss": loss, "val/loss": loss + 0.1, "train/lr": 0.01}}
            for i, loss in enumerate(losses)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if objective:
        (folder / "run.json").write_text(json.dumps(
            {"run": run, "job": job, "objective": {"name": "val/loss", "direction": "min"}}))
    return folder


@pytest.fixture
def volumes(tmp_path: Path) -> Path:
    found = tmp_path / "volumes"
    lay_out(found, RUN_A, "digits", [1.0, 0.6, 0.4, 0.3])
    lay_out(found, RUN_B, "digits-wide", [0.9, 0.5, 0.2])
    return found


def report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    return cli(capsys, "report", *args)


def test_a_png_of_two_runs_decodes_with_a_panel_per_metric(
        volumes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "curves.png"
    assert report(capsys, RUN_A, "20261208-02", "--out", str(out), "--volumes-dir", str(volumes)) == (
        0, f"wrote {out}: 3 metric(s) of 2 run(s)\n")
    picture = mpimg.imread(out)  # a PNG that decodes: 1000 px wide, 300 px per panel
    assert picture.shape[:2] == (900, 1000)
    assert picture.std() > 0.01  # something is drawn on it


def test_html_is_one_self_contained_page_with_the_runs_and_the_chosen_metric(
        volumes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "curves.html"
    code, said = report(capsys, RUN_A, RUN_B, "--out", str(out), "--metric", "train/loss",
                        "--volumes-dir", str(volumes))
    assert (code, said) == (0, f"wrote {out}: 1 metric(s) of 2 run(s)\n")
    page = out.read_text()
    assert f"<td>{RUN_A}</td><td>digits</td><td>40</td><td>val/loss 0.4</td>" in page
    assert f"<td>{RUN_B}</td><td>digits-wide</td><td>30</td><td>val/loss 0.3</td>" in page
    assert "http" not in page and "<script" not in page  # nothing fetched from elsewhere
    embedded = re.search(r'src="data:image/png;base64,([^"]+)"', page)
    assert embedded is not None
    picture = mpimg.imread(io.BytesIO(base64.b64decode(embedded.group(1))), format="png")
    assert picture.shape[:2] == (300, 1000)  # one panel: the metric asked for


def test_without_matplotlib_the_cli_says_so_in_one_line(
        volumes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # Python's own way to make an import fail
    code, said = report(capsys, RUN_A, "--out", str(tmp_path / "x.png"), "--volumes-dir", str(volumes))
    assert code == 1
    assert re.fullmatch(r"launch report: matplotlib is not installed; install the report extra with: "
                        r"pip install .*\[report\]'\n", said), said
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["nope"], "nope: no such run with metrics here (runs in {volumes})"),
    (["2026"], f"2026: names 2 runs ({RUN_A}, {RUN_B}); give more of the id"),
    ([RUN_A, "--metric", "val/acc"], f"{RUN_A}: no metric val/acc in these runs"),
    ([RUN_A, "--out", "{tmp}/x.svg"], "{tmp}/x.svg: --out must end in .png or .html"),
])
def test_bad_requests_are_one_line(args: list[str], message: str, volumes: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = ["--out", str(tmp_path / "r.png")] if "--out" not in argv else []
    assert report(capsys, *argv, *out, "--volumes-dir", str(volumes)) == (
        1, message.format(volumes=volumes, tmp=tmp_path) + "\n")


def test_a_damaged_line_is_named_by_file_and_line_but_a_half_written_last_line_is_not(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    volumes = tmp_path / "volumes"
    folder = lay_out(volumes, RUN_A, "digits", [1.0, 0.5], objective=False)
    metrics = folder / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 30, "metr')  # the loop is writing it
    out = tmp_path / "r.png"
    assert report(capsys, RUN_A, "--out", str(out), "--volumes-dir", str(volumes))[0] == 0
    metrics.write_text('{"step": 10}\n' + metrics.read_text())
    assert report(capsys, RUN_A, "--out", str(out), "--volumes-dir", str(volumes)) == (
        1, f"{metrics}:1: not a metrics line (want {{\"step\": N, \"time\": T, \"metrics\": {{...}}}})\n")


def test_report_imports_neither_torch_nor_modal(volumes: Path, tmp_path: Path) -> None:
    argv = ["report", RUN_A, "--out", str(tmp_path / "r.png"), "--volumes-dir", str(volumes)]
    assert fresh_cli(argv, ROOT) == (0, set())
    # stop of a run not found here looks on Modal too (modal's config, for credentials): no torch
    stop = ["stop", "nope", "--volumes-dir", str(volumes)]
    assert fresh_cli(stop, ROOT, ("torch", "accelerate")) == (1, set())
