"""The local volume never deletes what its job does not own, and a storage failure is the
user's: through `launch --local` (a real process where a folder is removed during the run,
forked workers elsewhere), with faults at the OS boundary where the machine cannot make them."""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from forkrun import run_forked
from runjob import RECIPES, checkpoints, launch_local, probe_spec, write_spec

from launcher.runtime.checkpoint import store

ROOT = Path(__file__).resolve().parents[2]


def manifests(job: Path) -> dict[str, dict]:
    return {c.path.name: c.manifest for c in store.complete(job)}


def test_removing_the_working_copies_during_a_run_deletes_nothing_on_the_volume(tmp_path: Path) -> None:
    """`rm -rf .launch/volumes/@work` during a run used to commit the working copy's absence:
    the other job's checkpoints and this job's own were deleted."""
    other = write_spec(tmp_path, {**probe_spec(steps=6), "name": "other"}, name="other.yaml")
    assert run_forked(other).code == 0
    volume = tmp_path / "volumes" / "vol"
    theirs = manifests(volume / "other")
    shutil.copy(RECIPES / "vandal_recipe.py", tmp_path)
    spec = probe_spec(steps=9, train={"recipe": "vandal_recipe:Vandal",
                                      "config": {"remove": str(tmp_path / "volumes" / "@work"), "at": 4}})
    run = launch_local(write_spec(tmp_path, spec))
    assert run.code == 0, run.output
    [failed] = [line for line in run.output.splitlines() if line.startswith("[launch] attempt 1:")]
    assert failed.startswith(f"[launch] attempt 1: transient ({volume.parent}/@work/vol/probe@"), run.output
    assert (": this attempt's working copy of the volume was removed or replaced while it ran; not "
            "committed: the volume is as it was (the changes since its last commit are lost; the "
            "next attempt starts from that commit); the traceback is in ") in failed, run.output
    assert "resumed from step-00000003" in run.output
    assert manifests(volume / "other") == theirs
    for ckpt in store.complete(volume / "other"):
        store.verify(ckpt)
    assert checkpoints(volume / "probe") == ["step-00000003", "step-00000006", "step-00000009"]
    assert "Traceback" not in run.output


def test_with_its_lock_removed_a_running_job_still_refuses_a_second_run(tmp_path: Path) -> None:
    """`rm -rf .launch/volumes/@locks` during a run, then `launch` of the job again: the second
    run used to take the first's working copy and lease as a dead run's, and the first's next
    commit wiped the volume. A working copy in use says its run is alive."""
    other = write_spec(tmp_path, {**probe_spec(steps=6), "name": "other"}, name="other.yaml")
    assert run_forked(other).code == 0
    volumes = tmp_path / "volumes"
    theirs = manifests(volumes / "vol" / "other")
    again = write_spec(tmp_path / "again", probe_spec(steps=3))
    shutil.copy(RECIPES / "vandal_recipe.py", tmp_path)
    spec = probe_spec(steps=9, train={"recipe": "vandal_recipe:Vandal", "config": {
        "remove": str(volumes / "@locks"), "at": 4, "relaunch": str(again), "volumes": str(volumes)}})
    run = launch_local(write_spec(tmp_path, spec))
    assert run.code == 0, run.output
    code, said = (tmp_path / "relaunch.txt").read_text().split("\n", 1)
    assert code == "1"
    assert said.startswith(f"probe: already running on volume vol (its working copy {volumes}/@work/vol/"
                           f"probe@"), said
    assert said.endswith(f" is in use, although its lock in {volumes}/@locks is gone); wait for it to "
                         "end or stop it\n"), said
    assert manifests(volumes / "vol" / "other") == theirs
    assert checkpoints(volumes / "vol" / "probe") == ["step-00000003", "step-00000006", "step-00000009"]
    assert "attempts     1 (1: finished)" in run.output


def test_a_job_folder_that_is_a_link_is_refused_and_never_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / ".tmp-step-00000003-x").mkdir(parents=True)
    (elsewhere / "notes.txt").write_text("a user's file")
    (tmp_path / "volumes" / "vol").mkdir(parents=True)
    (tmp_path / "volumes" / "vol" / "probe").symlink_to(elsewhere)
    run = run_forked(write_spec(tmp_path, probe_spec(steps=3)))  # a user's error: exit 1, one line
    folder = tmp_path / "volumes" / "vol" / "probe"
    assert run.code == 1, run.output
    assert run.output.splitlines()[-1] == (f"{folder}: is a symbolic link (to {elsewhere}), not a folder on "
                               "volume vol; links are never followed: replace it with a folder")
    assert sorted(p.name for p in elsewhere.iterdir()) == [".tmp-step-00000003-x", "notes.txt"]


def test_a_checkpoint_or_leftover_that_is_a_link_is_never_followed(tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path, probe_spec(steps=3))
    assert run_forked(spec_path).code == 0
    job = tmp_path / "volumes" / "vol" / "probe"
    outside = tmp_path / "outside"
    shutil.copytree(job / "step-00000003", outside / "step-00000009")
    (job / "step-00000009").symlink_to(outside / "step-00000009")
    (job / ".trash-step-00000001-ff").symlink_to(outside)
    spec_path.write_text(spec_path.read_text().replace("steps: 3", "steps: 4"))
    run = run_forked(spec_path)
    assert run.code == 0, run.output
    assert "resumed from step-00000003" in run.output
    assert run.output.count("removed leftover .trash-step-00000001-ff") == 1
    spec_path.write_text(spec_path.read_text().replace("steps: 4", "steps: 5"))
    again = run_forked(spec_path)
    assert again.code == 0, again.output
    assert "removed leftover" not in again.output  # the link went with the first run
    assert (outside / "step-00000009" / store.MANIFEST).is_file()
    assert (job / "step-00000009").is_symlink()  # not the job's to delete either


def test_a_full_disk_during_a_checkpoint_spends_one_attempt_and_says_where(tmp_path: Path) -> None:
    run = run_forked(write_spec(tmp_path, probe_spec(steps=9, retries={"max_retries": 2})),
                     "enospc:written:6")
    assert run.code == 1
    job = tmp_path / "volumes" / "vol" / "probe"
    assert (f"error        {job}: checkpoint after update 6 not written (earlier checkpoints are "
            "intact): no space left on device; a retry would fail the same way: free space there, "
            "then launch again") in run.output
    assert "attempts     1 (1: permanent)" in run.output
    assert checkpoints(job) == ["step-00000003"]
    leftovers = [p for p in job.rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_a_full_disk_in_a_stage_spends_one_attempt(tmp_path: Path) -> None:
    spec = probe_spec(steps=3)
    spec["stages"] = {"prepare": {"run": "probe_stages:prepare", "retries": 2}}
    shutil.copy(RECIPES / "probe_stages.py", tmp_path)
    run = run_forked(write_spec(tmp_path, spec), "enospc:prepare-run:1")
    assert run.code == 1
    assert "attempts 1 (1: permanent)" in run.output, run.output
    assert "the attempt failed: no space left on device; a retry would fail the same way" in run.output


def test_a_read_only_volumes_folder_is_one_located_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The OS boundary: every folder made under the volumes folder fails as on a read-only mount."""
    volumes = tmp_path / "volumes"
    real = os.mkdir

    def mkdir(path: str | os.PathLike[str], mode: int = 0o777, **kwargs: object) -> None:
        if Path(path).is_relative_to(volumes) and Path(path) != volumes:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        real(path, mode, **kwargs)

    volumes.mkdir()
    monkeypatch.setattr(os, "mkdir", mkdir)
    run = run_forked(write_spec(tmp_path, probe_spec(steps=3)))  # a user's error: exit 1 (it was 3)
    assert run.code == 1, run.output
    assert run.output.splitlines()[-1] == f"{volumes}/@locks/vol: cannot prepare the local run: Read-only file system"


def test_a_volume_on_another_filesystem_is_refused_before_any_attempt(tmp_path: Path) -> None:
    """A real second filesystem: /dev/shm (a tmpfs), linked in as the volume's folder."""
    shm = Path("/dev/shm") / f"launch-test-{os.getpid()}-{tmp_path.name}"
    shm.mkdir()
    try:
        (tmp_path / "volumes").mkdir()
        (tmp_path / "volumes" / "vol").symlink_to(shm)
        run = run_forked(write_spec(tmp_path, probe_spec(steps=3)))
        assert os.stat(shm).st_dev != os.stat(tmp_path).st_dev
        assert run.code == 1, run.output
        assert run.output.splitlines()[-1] == (
            f"{tmp_path}/volumes/vol: on another filesystem than {tmp_path}/volumes/@work/vol, where "
            "each attempt keeps its working copy (hard links of the volume): keep the volumes folder "
            "on one filesystem (mount it whole, or pass --volumes-dir)")
        assert list(shm.iterdir()) == []
    finally:
        shutil.rmtree(shm)


def test_a_stage_that_cannot_write_its_data_commits_no_partial_file(tmp_path: Path) -> None:
    """A real OS error at the OS boundary: the digits pipeline under a file-size limit (as a full
    disk, the write fails part-way). Prepare used to commit `data/.tmp-digits.pt` and spend every
    attempt on torch's "enforce fail at inline_container.cc"."""
    def limited() -> None:  # in the child: writes past 64 KiB fail with EFBIG, no signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    spec = tmp_path / "digits.yaml"
    text = (ROOT / "jobs" / "digits.yaml").read_text()
    spec.write_text(text.replace("    retries: 1\n    config: {test_fraction", "    retries: 2\n    config: {test_fraction"))
    volumes = tmp_path / "volumes"
    run = subprocess.run([sys.executable, "-m", "launcher.cli", str(spec), "--local", "--volumes-dir", str(volumes)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300, preexec_fn=limited)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    data = volumes / "digits" / "digits" / "data"
    assert (f"  failed in    prepare: {data}: stages.prepare failed writing its data: file too large "
            "for the filesystem or the process's limit (ulimit -f); a retry would fail the same way: "
            "raise the limit, then launch again") in output
    assert "attempts 1 (1: permanent)" in output
    assert "inline_container" not in output and "Traceback" not in output
    # Prepare writes aside and publishes whole: neither the data folder nor its staging folder
    # holds a partial file on the volume.
    staging = volumes / "digits" / "digits" / "stages" / "prepare" / ".data-next"
    assert [p.name for folder in (data, staging) if folder.exists() for p in folder.iterdir()] == []
