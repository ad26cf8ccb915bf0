"""A bug in launcher is not the user's transient failure: it is not retried, `launch` exits 3
and says where its full traceback is kept; the user's own mistakes stay theirs; an error of the
platform is still retried, with its errno and its traceback kept too, across ranks as well."""

from __future__ import annotations

import os
import re
from pathlib import Path

from forkrun import run_forked
from runjob import probe_spec, write_spec

BUG = "internal error (a bug in launcher): TypeError: an injected bug in launcher at"


def _kept_traceback(output: str) -> str:
    """The error log that the summary's error line names, read."""
    found = re.search(r"the traceback is in (\S+errors\.log)", output)
    assert found, output
    return Path(found[1]).read_text()


def test_a_launcher_bug_after_the_first_update_is_not_retried(tmp_path: Path) -> None:
    run = run_forked(write_spec(tmp_path, probe_spec(steps=6)), "bug:step:2")
    assert run.code == 3, run.output
    assert "attempts     1 (1: bug)" in run.output  # max_retries is 2: none was spent
    assert f"error        {BUG} step; the traceback is in " in run.output
    kept = _kept_traceback(run.output)
    assert "Traceback (most recent call last)" in kept
    assert 'launcher/runtime/faults.py", line' in kept
    assert "TypeError: an injected bug in launcher at step" in kept


def test_a_launcher_bug_before_the_first_update_is_a_bug_not_the_users(tmp_path: Path) -> None:
    run = run_forked(write_spec(tmp_path, probe_spec(steps=3)), "bug:stage2:1")
    assert run.code == 3, run.output
    assert "attempts     1 (1: bug)" in run.output
    assert f"error        {BUG} stage2; the traceback is in " in run.output
    assert "before the first update" not in run.output  # not blamed on the user's code
    assert "TypeError: an injected bug in launcher at stage2" in _kept_traceback(run.output)


USERS_MISTAKES = '''\
from probe_recipe import Probe


class InSetup(Probe):
    def setup(self, accelerator):
        super().setup(accelerator)
        self.config["missing"]


class InStep(Probe):
    def train_step(self, step):
        if step == 2:
            self.config["missing"]
        return super().train_step(step)
'''


def _mistaken(folder: Path, recipe: str) -> Path:
    spec = write_spec(folder, probe_spec(steps=4, train={"recipe": f"mistaken:{recipe}"}))
    (folder / "mistaken.py").write_text(USERS_MISTAKES)
    return spec


def test_the_users_key_error_before_the_first_update_is_theirs_and_permanent(tmp_path: Path) -> None:
    run = run_forked(_mistaken(tmp_path, "InSetup"))
    assert run.code == 1, run.output
    assert "attempts     1 (1: permanent)" in run.output
    assert ("error        mistaken.py:7: KeyError: 'missing' (in stage 2, before the first update "
            "completed: not retried, a retry would fail the same way)") in run.output


def test_the_users_key_error_after_the_first_update_is_theirs_and_retried(tmp_path: Path) -> None:
    run = run_forked(_mistaken(tmp_path, "InStep"))  # every attempt fails at update 3
    assert run.code == 1, run.output
    assert "attempts     3 (1: transient, 2: transient, 3: transient)" in run.output
    assert "a bug in launcher" not in run.output


def test_a_platform_error_is_still_retried_with_its_errno_and_traceback(tmp_path: Path) -> None:
    # A dropped connection: the platform's, not the job's (a full disk is permanent: no retry
    # frees space).
    run = run_forked(write_spec(tmp_path, probe_spec(steps=6)), "econnreset:step:2")
    assert run.code == 0, run.output
    assert "attempts     2 (1: transient, 2: finished)" in run.output
    assert ("[launch] attempt 1: transient (ConnectionResetError: [Errno 104] Connection reset by "
            "peer; the traceback is in ") in run.output
    assert "ConnectionResetError: [Errno 104] Connection reset by peer" in _kept_traceback(run.output)


def test_rank_0s_full_disk_reaches_rank_1_with_its_errno_and_traceback(tmp_path: Path) -> None:
    from runjob import launch_local  # real processes: Accelerate's workers, two ranks

    run = launch_local(write_spec(tmp_path, probe_spec(steps=6, retries=0)), "--processes", "2",
                       env={"LAUNCH_FAULT": "enospc:written:3"})  # fires on rank 0 alone
    assert run.code == 1, run.output
    # A full disk is permanent on every rank (no retry frees space), said where and why.
    assert "checkpoint after update 3 not written (earlier checkpoints are intact): no space left on device" in run.output
    assert "attempts     1 (1: permanent)" in run.output
    local = Path(os.environ.get("LAUNCH_LOCAL_DIR") or tmp_path / ".launch")  # the suite isolates it
    [log] = (local / "runs" / "probe").glob("*/errors.log")  # the run's own folder
    kept = log.read_text().split("\n### ")
    rank1 = next(entry for entry in kept if "RemoteTraceback" in entry)  # rebuilt from rank 0's description
    assert "OSError: [Errno 28] No space left on device" in rank1  # rank 0's own traceback
