"""The run registry (launcher.runtime.runs, `launch runs | logs | pull | rerun`), locally end to
end: each run leaves a record in its job's folder, the commands find it by a prefix of its id,
a run killed with -9 shows as dead, pulled checkpoints match their manifests, a rerun trains
the recorded spec again."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launcher.cli import main
from launcher.runtime.runs import liveness, lookup
from launcher.runtime.runs.record import RunRecord, new_run_id, record_path
from launcher.runtime.runs.recorder import Recorder
from runjob import fresh_cli, launch_forked, probe_spec, write_spec

ROOT = Path(__file__).resolve().parent.parent


def _record(run: str = "20261208-010203-a1b2", **kw: object) -> RunRecord:
    return RunRecord(run=run, job="probe", volume="vol", backend="local", started=1000.0, **kw)  # type: ignore[arg-type]


def _runs_json(capsys: pytest.CaptureFixture[str], volumes: Path, *args: str) -> list[dict]:
    capsys.readouterr()
    assert main(["runs", "--local", "--volumes-dir", str(volumes), "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


# -- the record ------------------------------------------------------------------------------

def test_run_ids_are_short_utc_and_sort_by_start_time() -> None:
    first, second = new_run_id(1796692650.0), new_run_id(1796692651.0)
    assert first.startswith("20261208-011730-") and len(first) == len("20261208-011730-a1b2")
    assert first < second


def test_a_record_survives_a_round_trip_and_ignores_unknown_keys(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, _record())
    rec.attempt_started("train", 1)
    rec.metrics(5, {"loss": 0.5, "sps": 10, "flag": True})
    rec.attempt_ended("train", 1, "transient", "worker exited with code 1")
    data = json.loads(record_path(tmp_path, "20261208-010203-a1b2").read_text())
    back = RunRecord.from_dict({**data, "from_a_newer_launcher": 1})
    assert back.attempts[0].outcome == "transient" and back.metrics["values"] == {"loss": 0.5, "sps": 10.0}
    assert back.transitions[0].status == "running"


def test_the_best_checkpoint_follows_the_objective_and_the_cost_follows_the_price(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, _record(prices={"train": 3.6}))
    rec.set_objective("val/loss", "min")
    for step, loss in ((10, 0.9), (20, 0.4), (30, 0.6)):
        rec.metrics(step, {"val/loss": loss})
        rec.checkpoint(step)
    assert rec.record.checkpoints["best"]["step"] == 20
    assert rec.record.checkpoints["newest"]["step"] == 30
    assert rec.record.objective == {"name": "val/loss", "mode": "min", "last": 0.6, "best": 0.4,
                                    "best_step": 20}
    rec.record.stage_seconds = {"train": 1800.0}
    assert rec.record.estimated_cost(now=0) == pytest.approx(1.8)
    rec.record.prices = {"train": None}
    assert rec.record.estimated_cost(now=0) is None  # no price on file: unknown, not $0


def test_a_running_record_whose_supervisor_is_gone_is_dead(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    rec = _record(coordinator={"host": os.uname().nodename, "pid": gone.pid})
    assert liveness.effective_status(rec, liveness.local_alive(rec, tmp_path, time.time())) == "dead"
    mine = _record(coordinator={"host": os.uname().nodename, "pid": os.getpid(),
                                "pid_start": liveness.process_start(os.getpid())})
    assert liveness.local_alive(mine, tmp_path, time.time()) is True
    reused = _record(coordinator={"host": os.uname().nodename, "pid": os.getpid(), "pid_start": "1"})
    assert liveness.local_alive(reused, tmp_path, time.time()) is False  # a pid reused since


def test_from_another_host_the_lease_heartbeat_says_whether_a_run_lives(tmp_path: Path) -> None:
    rec = _record(coordinator={"host": "elsewhere", "pid": 1})
    now = time.time()
    lease = {"call_id": rec.run, "owner": "pid 1 on elsewhere", "since": now - 100,
             "heartbeat": now - 10, "stale_after_s": 60}
    (tmp_path / "lease.json").write_text(json.dumps(lease))
    assert liveness.local_alive(rec, tmp_path, now) is True
    assert liveness.local_alive(rec, tmp_path, now + 120) is False  # stale heartbeat


def test_a_run_is_found_by_a_unique_prefix_and_refused_otherwise() -> None:
    runs = [lookup.Found(_record(r), None) for r in  # type: ignore[arg-type]
            ("20261208-010203-a1b2", "20261208-010203-a1c3", "20261209-000000-ffff")]
    assert lookup.find("20261209", runs, "here").record.run == "20261209-000000-ffff"
    with pytest.raises(lookup.RunNotFound) as ambiguous:
        lookup.find("20261208-010203-a1", runs, "here")
    assert str(ambiguous.value) == (
        "20261208-010203-a1: ambiguous, 2 runs start with it: 20261208-010203-a1b2 (probe), "
        "20261208-010203-a1c3 (probe); give more of the id")
    with pytest.raises(lookup.RunNotFound) as unknown:
        lookup.find("2027", runs, "here")
    assert str(unknown.value) == "2027: no run with this id in here; `launch runs` lists them"


# -- the commands, locally -------------------------------------------------------------------

OBJECTIVE_RECIPE = "from probe_recipe import Probe\n\nclass Scored(Probe):\n    objective = ('loss', 'min')\n"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One finished local run of a recipe with an objective, and its record."""
    folder = tmp_path_factory.mktemp("finished")
    spec = write_spec(folder, probe_spec(steps=9, train={"recipe": "scored:Scored"}))
    (folder / "scored.py").write_text(OBJECTIVE_RECIPE)
    done = launch_forked(spec)
    assert done.code == 0, done.output
    record = json.loads(next((folder / "volumes").rglob("run.json")).read_text())
    return folder, record


def test_launch_runs_lists_a_finished_run_with_its_checkpoint_and_objective(finished, capsys) -> None:
    folder, record = finished
    [run] = _runs_json(capsys, folder / "volumes")
    assert {k: run[k] for k in ("run", "job", "status", "stage", "attempts", "step", "checkpoint")} == {
        "run": record["run"], "job": "probe", "status": "finished", "stage": "train", "attempts": 1,
        "step": 9, "checkpoint": 9}
    assert run["objective"]["name"] == "loss" and run["objective"]["best"] <= run["objective"]["last"]
    assert run["cost_usd"] == 0.0 and run["ended"] is not None
    capsys.readouterr()
    assert main(["runs", "--local", "--volumes-dir", str(folder / "volumes"), "probe"]) == 0
    header, line = capsys.readouterr().out.splitlines()
    assert header.split() == ["RUN", "JOB", "STAGE", "STATUS", "GPU", "STARTED", "ELAPSED",
                              "ATTEMPTS", "CHECKPOINT", "OBJECTIVE", "COST", "COMMIT"]
    assert line.startswith(f"{record['run']}  probe  train  finished  cpu")


def test_logs_print_the_saved_lines_of_a_run_named_by_a_prefix(finished, capsys) -> None:
    folder, record = finished
    capsys.readouterr()
    assert main(["logs", record["run"][:17], "--local", "--volumes-dir", str(folder / "volumes")]) == 0
    out = capsys.readouterr().out
    assert "[launch] update 9 of 9" in out and out.rstrip().endswith("[launch] attempt 1: finished")
    # --follow on a run that has ended prints the same and returns.
    assert main(["logs", record["run"], "--follow", "--local", "--volumes-dir", str(folder / "volumes")]) == 0
    assert capsys.readouterr().out == out


@pytest.mark.parametrize("which", ["--latest", "--best", "--step=6"])
def test_pull_copies_a_checkpoint_whose_files_match_its_manifest(finished, which, tmp_path, capsys) -> None:
    folder, record = finished
    dest = tmp_path / "ckpt"
    assert main(["pull", record["run"], str(dest), which, "--local", "--volumes-dir",
                 str(folder / "volumes")]) == 0, capsys.readouterr().err
    manifest = json.loads((dest / "manifest.json").read_text())
    want = {"--latest": 9, "--best": record["checkpoints"]["best"]["step"], "--step=6": 6}[which]
    assert manifest["step"] == want
    for rel, entry in manifest["files"].items():
        assert hashlib.sha256((dest / rel).read_bytes()).hexdigest() == entry["sha256"]
    assert sorted(p.name for p in dest.iterdir()) == sorted([*manifest["files"], "manifest.json"])


def test_pull_of_a_checkpoint_retention_removed_says_what_is_kept(finished, tmp_path, capsys) -> None:
    folder, record = finished
    capsys.readouterr()
    code = main(["pull", record["run"], str(tmp_path / "x"), "--step", "2", "--local", "--volumes-dir",
                 str(folder / "volumes")])
    assert code == 1 and not (tmp_path / "x").exists()
    assert capsys.readouterr().err == (
        f"run {record['run']}: checkpoint 2 is not on volume vol (retention removed it, or it was "
        "never written); kept: 9, 6, 3\n")


def test_pull_refuses_a_file_that_does_not_match_its_manifest(tmp_path, capsys, monkeypatch) -> None:
    spec = write_spec(tmp_path, probe_spec(steps=3))
    monkeypatch.chdir(tmp_path)  # a spec is loaded where its recipe's module is found
    assert launch_forked(spec).code == 0
    ckpt = tmp_path / "volumes" / "vol" / "probe" / "step-00000003"
    target = ckpt / "recipe-0.pt"
    data = target.read_bytes()
    target.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])  # same size, another digest
    capsys.readouterr()
    assert main(["pull", str(spec), str(tmp_path / "out"), "--local", "--volumes-dir", str(tmp_path / "volumes")]) == 1
    assert "vol:probe/step-00000003/recipe-0.pt: does not match its manifest" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unknown_and_ambiguous_runs_are_one_line_and_exit_1(finished, capsys) -> None:
    folder, _ = finished
    for command in (["logs", "nope"], ["pull", "nope", "dest"], ["rerun", "nope"]):
        capsys.readouterr()
        assert main([*command, "--local", "--volumes-dir", str(folder / "volumes")]) == 1
        err = capsys.readouterr().err
        assert err == (f"nope: no run with this id in the local volumes in {folder / 'volumes'}; "
                       "`launch runs` lists them\n")


def test_a_run_killed_with_sigkill_shows_as_dead(tmp_path: Path, capsys) -> None:
    """Through a real `launch` process: its supervisor killed with -9 mid-training."""
    spec = write_spec(tmp_path, probe_spec(steps=400, train={"config": {"delay_s": 0.05}}))
    volumes = tmp_path / "volumes"
    env = {**os.environ, "PROBE_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "launcher.cli", str(spec), "--local",
                             "--volumes-dir", str(volumes)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        runs: list[dict] = []
        while time.monotonic() < deadline:  # until it has committed a checkpoint
            runs = _runs_json(capsys, volumes) if volumes.is_dir() else []
            if runs and runs[0]["checkpoint"] is not None:
                break
            time.sleep(0.2)
        assert runs and runs[0]["status"] == "running", runs
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    [run] = _runs_json(capsys, volumes)
    assert run["status"] == "dead"
    record = json.loads(next(volumes.rglob("run.json")).read_text())
    assert record["status"] == "running"  # nobody wrote its end: the reader decides


def test_rerun_trains_the_recorded_spec_again(finished, tmp_path: Path, capsys) -> None:
    """Through a real `launch rerun` process, in a copy of the shared run's folder (the other
    tests of the module, in any order, see that one run alone)."""
    shared, record = finished
    folder = tmp_path / "copy"
    shutil.copytree(shared, folder, symlinks=True)
    env = {**os.environ, "PROBE_DIR": str(folder)}
    done = subprocess.run([sys.executable, "-m", "launcher.cli", "rerun", record["run"], "--local",
                           "--volumes-dir", str(folder / "volumes")], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    runs = _runs_json(capsys, folder / "volumes")
    again = json.loads(next(p for p in (folder / "volumes").rglob("run.json")
                            if runs[0]["run"] in str(p)).read_text())
    assert again["run"] != record["run"] and again["spec_hash"] == record["spec_hash"]
    assert again["status"] == "finished" and again["result"]["resumed_from"] is None
    assert again["step"] == 9 and again["source"].startswith(f"rerun of {record['run']}")
    assert [r["run"] for r in runs] == [again["run"], record["run"]]  # both kept, newest first


def test_rerun_refuses_a_working_tree_at_another_commit(tmp_path: Path, capsys) -> None:
    spec = write_spec(tmp_path, probe_spec(steps=3))
    git = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    (tmp_path / ".gitignore").write_text("volumes/\n")
    git("add", ".")
    git("commit", "-qm", "one")
    assert launch_forked(spec).code == 0
    [run] = _runs_json(capsys, tmp_path / "volumes")
    assert run["commit"] and run["dirty"] is False
    git("commit", "-qm", "two", "--allow-empty")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        capsys.readouterr()
        assert main(["rerun", run["run"], "--local", "--volumes-dir", str(tmp_path / "volumes")]) == 1
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert err.startswith(f"run {run['run']} trained commit {run['commit'][:12]}, but HEAD is ")
    assert err.endswith(f"`git checkout {run['commit'][:12]}` (with its changes, if it had any), then rerun\n")


@pytest.mark.parametrize("args", [["runs", "--local"], ["runs", "--local", "--json", "--all"],
                                  ["logs", "x", "--local"], ["pull", "x", "{tmp}/d", "--local"]])
def test_run_commands_import_no_heavy_modules(args: list[str], tmp_path: Path) -> None:
    code, loaded = fresh_cli([a.replace("{tmp}", str(tmp_path)) for a in args], ROOT, ("torch", "accelerate"))
    assert code in (0, 1) and loaded == set()


def _recorded(volumes: Path, *runs: str) -> None:
    for run in runs:
        Recorder(volumes / "vol" / "probe", _record(run, stages=["prepare", "train"])).end("finished")


def test_an_ambiguous_run_is_one_line_naming_the_candidates(tmp_path: Path, capsys) -> None:
    _recorded(tmp_path, "20261208-010203-a1b2", "20261208-010203-a1c3")
    capsys.readouterr()
    assert main(["pull", "20261208-010203-a1", str(tmp_path / "d"), "--local", "--volumes-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        "20261208-010203-a1: ambiguous, 2 runs start with it: 20261208-010203-a1c3 (probe), "
        "20261208-010203-a1b2 (probe); give more of the id\n")


def test_bad_names_stages_and_options_are_one_line(tmp_path: Path, capsys) -> None:
    _recorded(tmp_path, "20261208-010203-a1b2")
    where = ["--local", "--volumes-dir", str(tmp_path)]
    capsys.readouterr()
    assert main(["logs", "20261208", "--stage", "evaluate", *where]) == 1
    assert capsys.readouterr().err == ("--stage evaluate: run 20261208-010203-a1b2 has no such stage "
                                       "(its stages: prepare, train)\n")
    assert main(["runs", "nosuchjob", *where]) == 1
    assert capsys.readouterr().err == (f"nosuchjob: no job of this name on the local volumes in {tmp_path}; "
                                       "give its spec file, or `launch runs --local` to list them all\n")
    assert main(["runs", "--volumes-dir", str(tmp_path)]) == 2
    assert "--volumes-dir needs --local" in capsys.readouterr().err
    assert main(["pull", "20261208", "d", "--best", "--latest", *where]) == 2
    assert "--step, --best and --latest exclude each other" in capsys.readouterr().err
    assert main(["pull", "20261208", "d", "--best", *where]) == 1
    assert capsys.readouterr().err == (
        "run 20261208-010203-a1b2: no best checkpoint recorded (the recipe names no objective, or "
        "none was measured at a checkpoint); --latest or --step N\n")


def test_a_damaged_record_is_skipped_not_fatal(tmp_path: Path, capsys) -> None:
    _recorded(tmp_path, "20261208-010203-a1b2")
    broken = tmp_path / "vol" / "probe" / "runs" / "20261208-999999-0000"
    broken.mkdir()
    (broken / "run.json").write_text("{not json")
    assert [r["run"] for r in _runs_json(capsys, tmp_path)] == ["20261208-010203-a1b2"]


def test_the_loop_s_metrics_history_gives_the_last_metrics_and_the_objective(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, _record())
    rec.set_objective("val/loss", "min")
    history = rec.path.parent / "metrics.jsonl"
    history.parent.mkdir(parents=True)
    history.write_text("\n".join(json.dumps({"step": s, "time": 1000.0 + s, "metrics": {"val/loss": v}})
                                 for s, v in ((10, 0.8), (20, 0.3), (30, 0.5))) + "\n{\"step\": 40, \"ti")
    rec.history(history)
    assert rec.record.metrics == {"step": 30, "time": 1030.0, "values": {"val/loss": 0.5}}
    assert (rec.record.objective["best"], rec.record.objective["best_step"]) == (0.3, 20)
