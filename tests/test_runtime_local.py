"""The runtime through `launch --local`: retries, preemption, failure classes, checkpoints.

Each test runs the real CLI with a small user recipe (tests/recipes): in a subprocess where the
process is what is tested (two processes, a signal during start-up), else in this process with
each worker forked (runjob.launch_forked), which skips seconds of imports per run.
Faults are injected at exact points (launcher.runtime.faults), never by timing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runjob import checkpoints, launch_forked, launch_local, probe_spec, write_spec


def _attempts(output: str) -> str:
    return next(line.split("attempts", 1)[1].strip() for line in output.splitlines()
                if line.strip().startswith("attempts"))


def test_a_clean_run_finishes_with_a_summary(tmp_path: Path) -> None:
    run = launch_forked(write_spec(tmp_path, probe_spec(steps=7)))
    assert run.code == 0, run.output
    assert "summary: probe finished" in run.output
    assert "updates      7 of 7" in run.output
    assert _attempts(run.output) == "1 (1: finished)"
    # every 3 steps, plus the final step; retention keeps 3
    assert checkpoints(run.volume / "vol" / "probe") == ["step-00000003", "step-00000006", "step-00000007"]
    assert "Traceback" not in run.output


def test_retention_keeps_exactly_keep_last(tmp_path: Path) -> None:
    spec = probe_spec(steps=9, checkpoint={"every_steps": 1, "keep_last": 2})
    run = launch_forked(write_spec(tmp_path, spec))
    assert run.code == 0, run.output
    assert checkpoints(run.volume / "vol" / "probe") == ["step-00000008", "step-00000009"]


def test_a_kill_is_retried_and_resumes_from_the_last_checkpoint(tmp_path: Path) -> None:
    run = launch_forked(write_spec(tmp_path, probe_spec(steps=8)), env={"LAUNCH_FAULT": "kill:step:5"})
    assert run.code == 0, run.output
    assert _attempts(run.output) == "2 (1: transient, 2: finished)"
    assert "retry 1 of 2 in 0 s" in run.output
    assert "resumed from step-00000003 (after update 3 of 8)" in run.output
    rows = [json.loads(line) for line in (tmp_path / "probe-rank0.jsonl").read_text().splitlines()]
    # steps 3 and 4 ran twice (killed after 5 updates, resumed from 3): one commit interval lost
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4, 3, 4, 5, 6, 7]


def test_a_preemption_restarts_without_spending_a_retry(tmp_path: Path) -> None:
    spec = probe_spec(steps=8, retries=0)
    run = launch_forked(write_spec(tmp_path, spec), env={"LAUNCH_FAULT": "int:step:5"})
    assert run.code == 0, run.output
    assert _attempts(run.output) == "2 (1: preempted, 2: finished)"
    assert "stopped on SIGINT after update 5 of 8; checkpoint committed" in run.output
    assert "resumed from step-00000005 (after update 5 of 8)" in run.output


def test_a_diverged_loss_is_permanent_and_not_retried(tmp_path: Path) -> None:
    spec = probe_spec(steps=8, train={"config": {"fail_at": 4}})
    run = launch_forked(write_spec(tmp_path, spec))
    assert run.code == 1
    assert _attempts(run.output) == "1 (1: permanent)"
    assert "error        loss became nan in update 5 of 8 (train_step(4)): training diverged" in run.output
    assert checkpoints(run.volume / "vol" / "probe") == ["step-00000003"]  # the NaN state was never saved
    assert "Traceback" not in run.output


def test_retries_run_out(tmp_path: Path) -> None:
    spec = probe_spec(steps=8, retries={"max_retries": 1})  # no backoff between attempts
    run = launch_forked(write_spec(tmp_path, spec),
                        env={"LAUNCH_FAULT": "kill:step:2", "LAUNCH_FAULT_ATTEMPT": "1"})
    assert run.code == 0, run.output  # one retry is enough when only attempt 1 is killed
    assert _attempts(run.output) == "2 (1: transient, 2: finished)"
    run = launch_forked(write_spec(tmp_path / "b", probe_spec(steps=8, retries=0)),
                        env={"LAUNCH_FAULT": "kill:step:2"})
    assert run.code == 1
    assert _attempts(run.output) == "1 (1: transient)"
    assert "error        worker exited with code -9" in run.output


def test_a_corrupt_newest_checkpoint_falls_back_with_a_warning(tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path, probe_spec(steps=6))
    assert launch_forked(spec_path).code == 0
    newest = tmp_path / "volumes" / "vol" / "probe" / "step-00000006" / "model.safetensors"
    data = bytearray(newest.read_bytes())
    data[-1] ^= 0xFF
    newest.write_bytes(bytes(data))
    spec_path.write_text(spec_path.read_text().replace("steps: 6", "steps: 9"))
    run = launch_forked(spec_path)
    assert run.code == 0, run.output
    assert ("warning: checkpoint step-00000006 skipped: model.safetensors does not match its "
            "sha256 in the manifest; falling back to the previous one") in run.output
    assert "resumed from step-00000003 (after update 3 of 9)" in run.output


def test_a_changed_model_config_refuses_to_resume(tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path, probe_spec(steps=3))
    assert launch_forked(spec_path).code == 0
    write_spec(tmp_path, probe_spec(steps=6, train={"config": {"width": 4}}))
    run = launch_forked(spec_path)
    assert run.code == 1
    assert ("cannot resume from step-00000003: the model changed (train.config: width 8 -> 4); "
            "set checkpoint.resume: never, or use another checkpoint.volume") in run.output
    assert _attempts(run.output) == "1 (1: permanent)"


def test_resume_never_starts_fresh(tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path, probe_spec(steps=3))
    assert launch_forked(spec_path).code == 0
    write_spec(tmp_path, probe_spec(steps=3, checkpoint={"resume": "never"}))
    run = launch_forked(spec_path)
    assert run.code == 0, run.output
    assert "checkpoint.resume is never: starting fresh" in run.output
    assert "[launch] update 1 of 3:" in run.output


def test_fresh_moves_old_checkpoints_aside(tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path, probe_spec(steps=3))
    assert launch_forked(spec_path).code == 0
    run = launch_forked(spec_path, "--fresh")
    assert run.code == 0, run.output
    assert "no checkpoint: starting fresh" in run.output
    archived = [p for p in (tmp_path / "volumes").iterdir() if p.name.startswith("vol.")]
    assert len(archived) == 1 and checkpoints(archived[0] / "probe") == ["step-00000003"]
    assert f"--fresh: earlier checkpoints moved to {archived[0] / 'probe'}" in run.output


def test_two_processes_keep_identical_parameters(tmp_path: Path) -> None:
    run = launch_local(write_spec(tmp_path, probe_spec(steps=6)), "--processes", "2")
    assert run.code == 0, run.output
    ranks = [[json.loads(line) for line in (tmp_path / f"probe-rank{r}.jsonl").read_text().splitlines()]
             for r in (0, 1)]
    assert [r["step"] for r in ranks[0]] == [r["step"] for r in ranks[1]] == list(range(6))
    assert [r["digest"] for r in ranks[0]] == [r["digest"] for r in ranks[1]]
    assert [r["loss"] for r in ranks[0]] != [r["loss"] for r in ranks[1]]  # different data per rank
    manifest = json.loads((run.volume / "vol" / "probe" / "step-00000006" / "manifest.json").read_text())
    assert manifest["extra"]["world_size"] == 2
    assert {"recipe-0.pt", "recipe-1.pt", "random_states_0.pkl", "random_states_1.pkl"} <= set(manifest["files"])
    # Resumed by one process, rank 1's environments would be lost (or rank 0's replayed twice
    # by more): a changed world size is refused.
    write_spec(tmp_path, probe_spec(steps=8))
    one = launch_forked(tmp_path / "job.yaml")
    assert one.code == 1 and _attempts(one.output) == "1 (1: permanent)"
    assert "cannot resume from step-00000006: it was written by 2 processes and this run has 1" in one.output


@pytest.mark.parametrize("snapshot,placed_in", [("cpu", "stage2"), ("none", "stage2"), ("gpu", "stage1")])
def test_device_placement_happens_in_the_stage_the_snapshot_allows(tmp_path: Path, snapshot: str,
                                                                    placed_in: str) -> None:
    spec = probe_spec(steps=2, snapshot=snapshot, compute={"gpu": "L4"})
    run = launch_forked(write_spec(tmp_path, spec))
    assert run.code == 0, run.output
    lines = run.output.splitlines()
    ready = next(i for i, line in enumerate(lines) if "accelerator ready: cpu, 1 process(es)" in line)
    stage1 = next(i for i, line in enumerate(lines) if "stage1 took" in line)
    assert (ready < stage1) == (placed_in == "stage1")


def test_a_permanent_failure_in_a_two_process_run_is_not_retried(tmp_path: Path) -> None:
    spec = probe_spec(steps=8, train={"config": {"fail_at": 4}})
    run = launch_local(write_spec(tmp_path, spec), "--processes", "2")
    assert run.code == 1
    assert _attempts(run.output) == "1 (1: permanent)"
    assert "error        loss became nan in update 5 of 8 (train_step(4)): training diverged" in run.output


def test_a_preemption_during_start_up_spends_no_retry(tmp_path: Path) -> None:
    # The first attempt holds in start-up (the recipe's __init__, stage 1), so the SIGINT lands
    # before the loop exists, however fast the worker starts: still a preemption.
    spec = probe_spec(steps=3, retries=0, train={"config": {"hold_first_attempt": True}})
    run = launch_local(write_spec(tmp_path, spec), "--preempt-after", "0.2")
    assert run.code == 0, run.output
    assert _attempts(run.output) == "2 (1: preempted, 2: finished)"


def test_no_secret_value_reaches_the_logs_or_a_manifest(tmp_path: Path) -> None:
    value = "s3cr3t-VALUE-987"
    run = launch_forked(write_spec(tmp_path, probe_spec(steps=3)),
                        env={"HF_TOKEN": value, "MODAL_TOKEN_SECRET": value})
    assert run.code == 0, run.output
    assert value not in run.output
    manifests = list((run.volume / "vol" / "probe").glob("step-*/manifest.json"))
    assert manifests and all(value not in m.read_text() for m in manifests)


def test_a_multi_node_spec_runs_locally_as_one_node(tmp_path: Path) -> None:
    # No Modal cluster here: the local worker has none to pass, rather than asking Modal for one
    # (modal.Cluster.from_context() refuses outside a clustered container).
    spec = probe_spec(steps=3, retries=0, compute={"gpu": "H100", "gpu_count": 8, "nodes": 2})
    run = launch_forked(write_spec(tmp_path, spec))
    assert run.code == 0, run.output
    assert _attempts(run.output) == "1 (1: finished)"
    manifest = json.loads((run.volume / "vol" / "probe" / "step-00000003" / "manifest.json").read_text())
    assert manifest["extra"]["world_size"] == 1
