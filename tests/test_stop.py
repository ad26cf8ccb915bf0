"""`launch stop RUN [--now]` on local runs, end to end.

A graceful stop reaches the worker's loop (a request file, runtime/control/stop.py), which ends
after its current update with a committed final checkpoint; the run ends as stopped (exit 143,
not retried, no later stage) and the job's lease is released, so the next launch resumes at
once. `--now` kills the worker. Synchronisation is by polling what the run writes.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fault"))

from forkrun import launch_forked, run_forked  # noqa: E402
from runjob import RECIPES, checkpoints, cli, probe_spec, write_spec  # noqa: E402
from test_signals import alive, rows, start_launch, wait_for  # noqa: E402

from launcher.cli import main  # noqa: E402

SLOW = {"config": {"delay_s": 0.05}}


def run_id(volumes: Path, job: str = "probe") -> str:
    return json.loads((volumes / "@locks" / "vol" / job).read_text())["run"]


def stop(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    return cli(capsys, "stop", *args)


def test_a_graceful_stop_commits_a_final_checkpoint_ends_stopped_and_frees_the_job(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    volumes = tmp_path / "volumes"
    spec = probe_spec(steps=400, train=SLOW, checkpoint={"volume": "vol", "every_steps": 1000,
                                                         "async": False})
    launch = start_launch(tmp_path, spec)
    wait_for("the run to train", lambda: len(rows(tmp_path)) >= 3)
    run = run_id(volumes)
    code, said = stop(capsys, run[:-2], "--volumes-dir", str(volumes))  # a unique prefix will do
    assert (code, said) == (0, f"stop asked of run {run} of job probe: it stops after its current "
                               "update, with a final checkpoint\n")
    assert launch.wait(timeout=300) == 143
    log = (tmp_path / "launch.log").read_text()
    assert "summary: probe stopped (launch stop)" in log, log
    assert "attempt 1: stopped" in log and "attempt 2" not in log  # not retried
    done = len(rows(tmp_path))
    assert 3 <= done < 400
    job = volumes / "vol" / "probe"
    assert checkpoints(job) == [f"step-{done:08d}"]  # the final checkpoint, of the last update
    assert not (job / "lease.json").exists()
    assert not any((volumes / "@control").iterdir())  # the request went with the run
    # A run that has ended: one line, exit 1.
    assert stop(capsys, run, "--volumes-dir", str(volumes)) == (
        1, f"{run}: run {run} of job probe has ended; nothing to stop\n")
    # The job is free: the next launch starts at once and resumes from the final checkpoint.
    again = run_forked(write_spec(tmp_path, {**spec, "train": {**spec["train"], "steps": done + 2}}))
    assert again.code == 0, again.output
    assert f"resumed from step-{done:08d}" in again.output


@pytest.mark.parametrize("snapshot", ["none", "cpu"])  # cpu: the attempt is restored from a snapshot
def test_stop_now_kills_the_worker_and_the_run_ends_stopped_without_a_retry(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], snapshot: str) -> None:
    volumes = tmp_path / "volumes"
    launch = start_launch(tmp_path, probe_spec(steps=400, train=SLOW, snapshot=snapshot))
    wait_for("the run to train", lambda: len(rows(tmp_path)) >= 4)
    worker = rows(tmp_path)[0]["pid"]
    run = run_id(volumes)
    code, said = stop(capsys, run, "--now", "--volumes-dir", str(volumes))
    assert code == 0 and said.startswith(f"stopping run {run} of job probe now"), said
    assert launch.wait(timeout=300) == 143
    log = (tmp_path / "launch.log").read_text()
    assert "summary: probe stopped (launch stop)" in log, log
    assert "attempt 1: stopped (stopped at once (launch stop --now))" in log
    assert "attempt 2" not in log
    assert not alive(worker)
    assert not (volumes / "vol" / "probe" / "lease.json").exists()
    # What it committed before the kill stays: every_steps 3.
    assert checkpoints(volumes / "vol" / "probe")[-1].startswith("step-")


def test_a_graceful_stop_of_two_processes_stops_both_at_the_same_update(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    volumes = tmp_path / "volumes"
    launch = start_launch(tmp_path, probe_spec(steps=400, train=SLOW), "--processes", "2")
    wait_for("both ranks to train", lambda: all(len(rows(tmp_path, r)) >= 3 for r in (0, 1)))
    assert stop(capsys, run_id(volumes), "--volumes-dir", str(volumes))[0] == 0
    assert launch.wait(timeout=300) == 143, (tmp_path / "launch.log").read_text()
    done = [len(rows(tmp_path, r)) for r in (0, 1)]
    assert done[0] == done[1]  # the ranks agreed on the update to stop after
    assert checkpoints(volumes / "vol" / "probe")[-1] == f"step-{done[0]:08d}"
    assert "summary: probe stopped (launch stop)" in (tmp_path / "launch.log").read_text()


def test_stop_of_an_unknown_run_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    volumes = tmp_path / "volumes"
    assert stop(capsys, "nope", "--volumes-dir", str(volumes)) == (
        1, f"nope: no such run here (runs in {volumes}); on Modal: no Modal credentials: run "
           "`modal setup` (or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET); `launch JOB --local` "
           "runs without an account\n")


def test_a_modal_run_named_by_its_run_id_stops_its_coordinators_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from launcher import registry
    from launcher.commands import stop as stop_command

    asked = []
    record = SimpleNamespace(run="20261208-010203-a1b2", coordinator={"call_id": "fc-driver"})
    monkeypatch.setattr(registry, "find", lambda run, where, targets: asked.append((run, where, targets))
                        or SimpleNamespace(record=record))
    assert stop_command._coordinator_call("20261208", "staging", "jobs/x.yaml") == "fc-driver"
    assert asked == [("20261208", registry.Where(local=False, environment="staging"), ("jobs/x.yaml",))]
    record.coordinator = {"pid": 12}  # a local run's record, read from a Modal volume: nothing to stop
    with pytest.raises(stop_command.RunError, match="names no Modal call"):
        stop_command._coordinator_call("20261208", None, None)


def test_stopping_a_pipeline_in_train_runs_no_later_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = probe_spec(steps=400, train=SLOW)
    spec["stages"] = {"prepare": {"run": "probe_stages:prepare", "retries": 0},
                      "evaluate": {"run": "probe_stages:evaluate", "retries": 0}}
    path = write_spec(tmp_path, spec)
    shutil.copy(RECIPES / "probe_stages.py", tmp_path / "probe_stages.py")
    volumes = tmp_path / "volumes"
    said: list[tuple[int, str]] = []

    def stopper() -> None:  # `launch stop` from another thread; SIGUSR1 reaches this process
        wait_for("train to run", lambda: len(rows(tmp_path)) >= 3)
        said.append((main(["stop", run_id(volumes), "--volumes-dir", str(volumes)]), ""))

    thread = threading.Thread(target=stopper)
    thread.start()
    run = launch_forked(path)
    thread.join()
    assert said == [(0, "")]
    assert run.code == 143, run.output
    assert "summary: probe stopped (launch stop)" in run.output
    assert "evaluate     not run (the run was stopped)" in run.output
    done = len(rows(tmp_path))
    assert checkpoints(volumes / "vol" / "probe")[-1] == f"step-{done:08d}"
    assert not (volumes / "vol" / "probe" / "lease.json").exists()
