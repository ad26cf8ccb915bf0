"""Pipelines through `launch --local`: stages in order, skips and reruns by digest, stale
checkpoints refused, a permanent failure that stops the pipeline, and kills in every stage.

Each test runs the real CLI with the probe recipe and probe stage functions (tests/recipes): in
this process with each worker forked (runjob.launch_forked), in a subprocess for two processes;
faults are injected at named points (launcher.runtime.faults), never by timing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from runjob import RECIPES, launch_forked, launch_local, probe_spec, write_spec

from launcher.runtime.pipeline.results import PipelineResult


def pipeline_spec(steps: int = 6, prepare: dict[str, Any] | None = None, **sections: Any) -> dict:
    spec = probe_spec(steps=steps, **sections)
    spec["stages"] = {
        "prepare": {"run": "probe_stages:prepare", "retries": 0, **(prepare or {})},
        "evaluate": {"run": "probe_stages:evaluate", "retries": 0},
    }
    return spec


def write(folder: Path, spec: dict) -> Path:
    path = write_spec(folder, spec)
    shutil.copy(RECIPES / "probe_stages.py", folder / "probe_stages.py")
    return path


def ran(folder: Path) -> list[dict]:
    """What the stage functions recorded, in order."""
    path = folder / "stages.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def train_steps(folder: Path) -> list[int]:
    return [json.loads(row)["step"] for row in (folder / "probe-rank0.jsonl").read_text().splitlines()]


def line(output: str, stage: str) -> str:
    return next(row.strip() for row in output.splitlines() if row.startswith(f"  {stage:<12}"))


def test_the_stages_run_in_order_and_a_rerun_skips_an_unchanged_prepare(tmp_path: Path) -> None:
    spec = write(tmp_path, pipeline_spec())
    first = launch_forked(spec)
    assert first.code == 0, first.output
    assert [r["stage"] for r in ran(tmp_path)] == ["prepare", "evaluate"]
    assert ran(tmp_path)[1] == {"stage": "evaluate", "step": 6, "rows": 3}  # prepare's data, train's checkpoint
    assert line(first.output, "prepare").startswith("prepare      finished")
    assert line(first.output, "evaluate").endswith("checkpoint_step 6, has_accelerator 1, rows 3")
    assert "summary: probe finished" in first.output

    second = launch_forked(spec)
    assert second.code == 0, second.output
    assert "prepare: skipped, finished earlier with the same inputs" in second.output
    assert line(second.output, "prepare").startswith("prepare      skipped (unchanged since it finished")
    assert [r["stage"] for r in ran(tmp_path)] == ["prepare", "evaluate", "evaluate"]  # evaluate always runs
    assert train_steps(tmp_path) == list(range(6))  # train resumed at its end: nothing redone

    third = launch_forked(spec, "--rerun", "prepare")
    assert third.code == 0, third.output
    assert "prepare: running it again, as --rerun asks" in third.output
    assert [r["stage"] for r in ran(tmp_path)].count("prepare") == 2


def test_a_changed_prepare_runs_again_and_train_refuses_the_old_checkpoints_unless_fresh(tmp_path: Path) -> None:
    spec = write(tmp_path, pipeline_spec())
    assert launch_forked(spec).code == 0
    changed = launch_forked(spec, "--set", "stages.prepare.config.rows=5")
    assert changed.code == 1, changed.output
    assert "prepare: its inputs changed since it finished" in changed.output
    assert [r["rows"] for r in ran(tmp_path) if r["stage"] == "prepare"] == [3, 5]
    assert "cannot resume from step-00000006: it was trained on data from prepare " in changed.output
    assert line(changed.output, "train").startswith("train        permanent")
    assert line(changed.output, "evaluate") == "evaluate     not run (an earlier stage failed)"
    assert "  failed in    train: cannot resume from step-00000006" in changed.output
    assert "resumed from" not in changed.output  # refused before anything was loaded

    fresh = launch_forked(spec, "--set", "stages.prepare.config.rows=5", "--fresh")
    assert fresh.code == 0, fresh.output
    assert ran(tmp_path)[-1] == {"stage": "evaluate", "step": 6, "rows": 5}


def test_a_permanent_stage_failure_stops_the_pipeline_and_names_the_stage(tmp_path: Path) -> None:
    spec = write(tmp_path, pipeline_spec(prepare={"retries": 2, "config": {"broken": True}}))
    run = launch_forked(spec)
    assert run.code == 1, run.output
    assert "Traceback" not in run.output
    error = ("stages.prepare: the function returned str, not a mapping of metric names to numbers")
    assert line(run.output, "prepare") == f"prepare      permanent, {line(run.output, 'prepare').split(', ', 1)[1]}"
    assert "attempts 1 (1: permanent)" in line(run.output, "prepare")  # not retried
    assert line(run.output, "train") == "train        not run (an earlier stage failed)"
    assert line(run.output, "evaluate") == "evaluate     not run (an earlier stage failed)"
    assert f"  failed in    prepare: {error}" in run.output
    assert not (tmp_path / "probe-rank0.jsonl").exists()  # train never started


def test_a_stage_that_needs_a_missing_package_fails_at_once_naming_it(tmp_path: Path) -> None:
    spec = write(tmp_path, pipeline_spec(prepare={"retries": 2, "config": {"needs": "no_such_pkg_xyz"}}))
    run = launch_forked(spec)
    assert run.code == 1, run.output
    assert "attempts 1 (1: permanent)" in line(run.output, "prepare")  # not retried
    assert ("  failed in    prepare: stages.prepare.run: probe_stages:prepare needs a module that is "
            "not installed (No module named 'no_such_pkg_xyz')") in run.output


def test_a_kill_in_any_stage_then_a_rerun_redoes_nothing_that_was_committed(tmp_path: Path) -> None:
    spec = write(tmp_path, pipeline_spec(steps=8, retries=0))
    killed = launch_forked(spec, env={"LAUNCH_FAULT": "kill:prepare-run:1"})
    assert killed.code == 1 and "failed in    prepare: worker exited with code -9" in killed.output
    assert line(killed.output, "prepare").startswith("prepare      failed, ")
    assert launch_forked(spec, env={"LAUNCH_FAULT": "kill:step:5"}).code == 1  # prepare redone, then killed in train
    assert [r["stage"] for r in ran(tmp_path)] == ["prepare", "prepare"]  # the first never committed
    killed = launch_forked(spec, env={"LAUNCH_FAULT": "kill:evaluate-run:1"})
    assert killed.code == 1 and "failed in    evaluate" in killed.output
    assert "prepare: skipped" in killed.output and "resumed from step-00000003" in killed.output
    done = launch_forked(spec)
    assert done.code == 0, done.output
    assert "prepare: skipped" in done.output and "resumed from step-00000008" in done.output
    assert [r["stage"] for r in ran(tmp_path)] == ["prepare", "prepare", "evaluate", "evaluate"]
    # steps 3 and 4 ran twice (killed after 5, committed every 3); nothing after the end redone
    assert train_steps(tmp_path) == [0, 1, 2, 3, 4, 3, 4, 5, 6, 7]


def test_preempt_after_works_in_a_stage_and_spends_no_retry(tmp_path: Path) -> None:
    # prepare's first attempt holds until the preemption arrives (retries: 0, so a retry
    # would fail the run); the other stages' first attempts may be preempted as well.
    spec = write(tmp_path, pipeline_spec(prepare={"config": {"hold_first_attempt": True}}, retries=0))
    run = launch_forked(spec, "--preempt-after", "1")
    assert run.code == 0, run.output
    assert "attempts 2 (1: preempted, 2: finished)" in line(run.output, "prepare")
    assert [r["stage"] for r in ran(tmp_path)] == ["prepare", "evaluate"]
    assert line(run.output, "evaluate").startswith("evaluate     finished")


def test_evaluate_loads_the_newest_checkpoint_even_when_train_never_resumes(tmp_path: Path) -> None:
    # checkpoint.resume is train's setting: evaluate always evaluates what train saved last.
    spec = write(tmp_path, pipeline_spec(checkpoint={"resume": "never"}))
    run = launch_forked(spec)
    assert run.code == 0, run.output
    assert ran(tmp_path)[-1] == {"stage": "evaluate", "step": 6, "rows": 3}


def test_evaluate_follows_a_train_of_two_processes(tmp_path: Path) -> None:
    # evaluate runs one process; train's checkpoint was written by two (process 0's state loads)
    run = launch_local(write(tmp_path, pipeline_spec(steps=4)), "--processes", "2")
    assert run.code == 0, run.output
    assert line(run.output, "evaluate").startswith("evaluate     finished")
    assert ran(tmp_path)[-1] == {"stage": "evaluate", "step": 4, "rows": 3}


def test_a_pipeline_stopped_by_a_signal_says_so_whichever_stage_was_running(tmp_path: Path, monkeypatch) -> None:
    import signal

    from launcher.backends.local import Options
    from launcher.backends.pipeline import Pipeline, report
    from launcher.load import load_spec

    monkeypatch.chdir(tmp_path)  # the recipe and stage modules are found here, as `launch` finds them
    spec = load_spec(write(tmp_path, pipeline_spec())).spec
    pipe = Pipeline(spec, tmp_path / "run", tmp_path / "volumes", Options())
    pipe.stop(signal.SIGTERM)  # while prepare ran, before train had a supervisor
    outcome = PipelineResult.from_json({"status": "failed", "failed_stage": "prepare", "stages": [
        {"stage": "prepare", "status": "interrupted", "error": "interrupted"}]})
    assert report(pipe, outcome, 1.0).splitlines()[0] == "summary: probe stopped (SIGTERM)"


@pytest.mark.parametrize("stage", ["prepare", "evaluate"])
def test_the_driver_holds_the_job_in_every_stage_and_a_second_launch_is_refused(tmp_path: Path, stage: str) -> None:
    import re
    import signal

    from test_signals import start_launch, wait_for

    spec = pipeline_spec()
    spec["stages"][stage]["config"] = {"hold_first_attempt": True}  # until the SIGTERM below
    shutil.copy(RECIPES / "probe_stages.py", tmp_path / "probe_stages.py")
    first = start_launch(tmp_path, spec)
    log = tmp_path / "launch.log"
    wait_for(f"the first run to start {stage}", lambda: f"stage {stage}: starting" in log.read_text())
    job = tmp_path / "volumes" / "vol" / "probe"
    lease = json.loads((job / "lease.json").read_text())  # the driver's, under the run's id
    record = json.loads((job / "driver.json").read_text())  # the stage calls it made, committed
    assert lease["call_id"] == record["driver"] and lease["call_id"].startswith("local-")
    assert record["stages"][stage]["call"].startswith(f"{lease['call_id']}-{stage}-")

    second = launch_forked(tmp_path / "job.yaml")
    assert second.code == 1
    assert re.fullmatch(rf"probe: already running on volume vol \(launch pid {first.pid} on [^,]+, since "
                        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\); wait for it to end or stop it\n",
                        second.output), second.output
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=300) == 143, log.read_text()
    assert not (job / "lease.json").exists()  # released when the run ended
    assert [r["stage"] for r in ran(tmp_path)] == (["prepare"] if stage == "evaluate" else [])


def test_a_pipeline_refused_before_any_stage_says_why(tmp_path: Path, monkeypatch) -> None:
    from launcher.backends.local import Options
    from launcher.backends.pipeline import Pipeline, report
    from launcher.load import load_spec

    monkeypatch.chdir(tmp_path)
    spec = load_spec(write(tmp_path, pipeline_spec())).spec
    pipe = Pipeline(spec, tmp_path / "run", tmp_path / "volumes", Options())
    held = "probe: already running on volume vol: call fc-1 (pid 1 on h) since ..."
    outcome = PipelineResult.from_json({"status": "permanent", "error": held, "failed_stage": None,
                                        "stages": []})
    lines = report(pipe, outcome, 1.0).splitlines()
    assert lines[0] == "summary: probe failed" and lines[-1] == f"  error        {held}"
    assert "  train        not run (the run was refused)" in lines

def volume_rows(run: Any) -> int:
    return json.loads((run.volume / "vol" / "probe" / "data" / "rows.json").read_text())["rows"]


def test_a_prepare_that_fails_after_writing_leaves_the_old_data_and_no_finished_marker(tmp_path: Path) -> None:
    spec = write(tmp_path, pipeline_spec())
    first = launch_forked(spec)
    assert first.code == 0, first.output
    # A rerun of prepare writes other data, then fails; its worker's volume is committed anyway.
    failed = launch_forked(spec, "--rerun", "prepare", env={"PROBE_ROWS": "7", "PROBE_FAIL_AFTER_WRITE": "1"})
    assert failed.code == 1, failed.output
    assert "failed in    prepare" in failed.output
    assert volume_rows(failed) == 3  # never published
    again = launch_forked(spec)
    assert again.code == 0, again.output
    assert "prepare: skipped" not in again.output  # the old marker no longer stands
    assert ran(tmp_path)[-1] == {"stage": "evaluate", "step": 6, "rows": 3}
    assert [r["stage"] for r in ran(tmp_path)] == ["prepare", "evaluate", "prepare", "evaluate"]
    assert "resumed from step-00000006" in again.output  # bit-identical data: train's checkpoint stands


def test_changing_how_prepare_runs_does_not_run_it_again(tmp_path: Path) -> None:
    spec = write(tmp_path, pipeline_spec())
    assert launch_forked(spec).code == 0
    run = launch_forked(spec, "--set", "stages.prepare.retries=2", "--set", "retries.max_delay=20s",
                        "--set", "compute.timeout=1h", "--set", "stages.prepare.compute.timeout=5m")
    assert run.code == 0, run.output
    assert "prepare: skipped, finished earlier with the same inputs" in run.output
    assert "resumed from step-00000006" in run.output


def with_inputs(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "table.csv").write_text("a\nb\nc\n")
    return write(tmp_path, pipeline_spec(prepare={"inputs": ["data/"]}))


FRESH = "run again with --fresh to set the job's checkpoints aside and train on the new data from step 0"


def test_a_changed_input_file_runs_prepare_again_and_train_refuses_the_old_checkpoints(tmp_path: Path) -> None:
    spec = with_inputs(tmp_path)
    first = launch_forked(spec)
    assert first.code == 0, first.output
    assert ran(tmp_path)[-1] == {"stage": "evaluate", "step": 6, "rows": 3}
    assert "prepare: skipped" in launch_forked(spec).output
    with open(tmp_path / "data" / "table.csv", "a") as out:
        out.write("d\ne\n")
    changed = launch_forked(spec)
    assert changed.code == 1, changed.output
    assert "prepare: its inputs changed since it finished" in changed.output
    assert [r["rows"] for r in ran(tmp_path) if r["stage"] == "prepare"] == [3, 5]
    assert "cannot resume from step-00000006: it was trained on data from prepare " in changed.output
    assert FRESH in changed.output and "resume: never" not in changed.output
    fresh = launch_forked(spec, "--fresh")
    assert fresh.code == 0, fresh.output
    assert ran(tmp_path)[-1] == {"stage": "evaluate", "step": 6, "rows": 5}


def test_train_refuses_checkpoints_made_on_other_data_whatever_the_order_of_events(tmp_path: Path) -> None:
    spec = with_inputs(tmp_path)
    assert launch_forked(spec).code == 0
    # prepare publishes other data under --rerun (same spec), then train resumes: it must refuse
    rerun = launch_forked(spec, "--rerun", "prepare", env={"PROBE_ROWS": "0"})
    assert rerun.code == 0, rerun.output  # PROBE_ROWS is ignored: the input decides, unchanged
    assert "resumed from step-00000006" in rerun.output
    (tmp_path / "data" / "table.csv").write_text("x\n")
    only_prepare = launch_forked(spec, "--rerun", "prepare")
    assert only_prepare.code == 1, only_prepare.output
    assert "cannot resume from step-00000006" in only_prepare.output and FRESH in only_prepare.output
    again = launch_forked(spec)  # prepare is now finished and skipped: train still refuses
    assert again.code == 1 and "prepare: skipped" in again.output
    assert "cannot resume from step-00000006" in again.output


def test_a_second_run_with_nothing_to_train_keeps_trains_result(tmp_path: Path) -> None:
    spec = write(tmp_path, pipeline_spec())
    first = launch_forked(spec)
    assert first.code == 0, first.output
    result = first.volume / "vol" / "probe" / "stages" / "train" / "result.json"
    trained = json.loads(result.read_text())
    assert trained["metrics"] and trained["steps"] == 6
    second = launch_forked(spec)
    assert second.code == 0, second.output
    assert json.loads(result.read_text()) == trained


def test_a_launcher_bug_in_a_stage_stops_the_pipeline_and_exits_3(tmp_path: Path) -> None:
    run = launch_forked(write(tmp_path, pipeline_spec()), env={"LAUNCH_FAULT": "bug:step:2"})
    assert run.code == 3, run.output  # EXIT_BUG, as a single job's bug: not the user's failure
    assert "attempts 1 (1: bug)" in line(run.output, "train")  # not retried
    assert "TypeError: an injected bug in launcher at step" in line(run.output, "train")
    assert line(run.output, "evaluate") == "evaluate     not run (an earlier stage failed)"
