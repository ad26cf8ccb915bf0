"""Several jobs on one volume, two runs of one job, and volumes from older versions.

Each job keeps its checkpoints in its own folder (`<volume>/<job name>/`) and resumes only its
own; one run of a job at a time holds it (a second one refuses in one line); checkpoints that an
older launcher left at a volume's top level are never loaded, and the run says how to move them.
"""

from __future__ import annotations

import re
import shutil
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "fault"))

from forkrun import run_forked  # noqa: E402
from runjob import checkpoints, probe_spec, write_spec  # noqa: E402
from statecmp import differences, load_checkpoint  # noqa: E402
from test_signals import rows, start_launch, wait_for  # noqa: E402


def job(name: str, steps: int, **sections) -> dict:
    return {**probe_spec(steps=steps, **sections), "name": name}


def test_two_jobs_on_one_volume_keep_and_resume_their_own_checkpoints(tmp_path: Path) -> None:
    first = run_forked(write_spec(tmp_path, job("ppo", 6), "ppo.yaml"))
    assert first.code == 0, first.output
    second = run_forked(write_spec(tmp_path, job("ppo-multi-gpu", 9, checkpoint={"keep_last": 1}),
                                   "multi.yaml"))
    assert second.code == 0, second.output
    assert "no checkpoint: starting fresh" in second.output  # not "resumed from" ppo's step 6
    volume = tmp_path / "volumes" / "vol"
    assert checkpoints(volume / "ppo") == ["step-00000003", "step-00000006"]  # its retention left them
    assert checkpoints(volume / "ppo-multi-gpu") == ["step-00000009"]
    again = run_forked(write_spec(tmp_path, job("ppo", 8), "ppo.yaml"))
    assert again.code == 0, again.output
    assert "resumed from step-00000006 (after update 6 of 8)" in again.output


def test_two_jobs_running_at_once_on_one_volume_do_not_touch_each_other(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
    volumes = tmp_path / "volumes"
    slow = {"config": {"delay_s": 0.02}}
    runs = [start_launch(folder, job(f"job-{folder.name}", 30, train=slow), volumes=volumes)
            for folder in (a, b)]
    codes = [run.wait(timeout=300) for run in runs]
    assert codes == [0, 0], [(f / "launch.log").read_text() for f in (a, b)]
    for folder in (a, b):
        assert checkpoints(volumes / "vol" / f"job-{folder.name}") == [
            "step-00000024", "step-00000027", "step-00000030"]
    # The same updates as a run on a volume of its own.
    alone = run_forked(write_spec(tmp_path / "alone", job("job-a", 30)))
    assert differences(load_checkpoint(volumes / "vol" / "job-a" / "step-00000030"),
                       load_checkpoint(alone.volume / "vol" / "job-a" / "step-00000030")) == []


def test_a_second_run_of_a_running_job_is_refused_in_one_line(tmp_path: Path) -> None:
    spec = probe_spec(steps=400, train={"config": {"delay_s": 0.05}})
    first = start_launch(tmp_path, spec)
    wait_for("the first run to train", lambda: len(rows(tmp_path)) >= 2)
    second = run_forked(tmp_path / "job.yaml")
    assert second.code == 1
    assert re.fullmatch(rf"probe: already running on volume vol \(launch pid {first.pid} on [^,]+, since "
                        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\); wait for it to end or stop it\n",
                        second.output), second.output
    first.send_signal(signal.SIGTERM)  # end the first run here: it checkpoints what it has
    assert first.wait(timeout=300) == 143, (tmp_path / "launch.log").read_text()
    done = len(rows(tmp_path))
    assert [r["step"] for r in rows(tmp_path)] == list(range(done))  # the second trained nothing
    assert checkpoints(tmp_path / "volumes" / "vol" / "probe")[-1] == f"step-{done:08d}"


def test_checkpoints_at_an_old_volume_s_top_level_are_not_loaded_and_the_move_is_said(tmp_path: Path) -> None:
    made = run_forked(write_spec(tmp_path / "old", probe_spec(steps=3)))
    assert made.code == 0, made.output
    volume = tmp_path / "volumes" / "vol"
    volume.mkdir(parents=True)
    shutil.copytree(made.volume / "vol" / "probe" / "step-00000003", volume / "step-00000003")
    run = run_forked(write_spec(tmp_path, probe_spec(steps=4)))
    assert run.code == 0, run.output
    assert (f"[launch] warning: {volume} holds checkpoints written by an older launcher at its top "
            f"level (step-00000003); checkpoints now live in a folder per job, and these are not "
            f"loaded. To resume probe from them: mkdir -p {volume / 'probe'} && mv {volume}/step-* "
            f"{volume / 'probe'}/") in run.output
    assert "no checkpoint: starting fresh" in run.output
    shutil.rmtree(volume / "probe")
    (volume / "probe").mkdir()
    (volume / "step-00000003").rename(volume / "probe" / "step-00000003")  # as the notice says
    moved = run_forked(write_spec(tmp_path, probe_spec(steps=4)))
    assert "resumed from step-00000003" in moved.output and "older launcher" not in moved.output
