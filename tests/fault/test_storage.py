"""Storage faults at run time: a full disk, checkpoints someone else modified, leftovers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from forkrun import run_forked
from runjob import checkpoints, probe_spec, write_spec


def test_a_full_disk_keeps_old_checkpoints_and_says_so(tmp_path: Path) -> None:
    spec = probe_spec(steps=9, retries=0)
    run = run_forked(write_spec(tmp_path, spec), "enospc:written:6")
    assert run.code == 1
    assert (f"error        {run.volume / 'vol' / 'probe'}: checkpoint after update 6 not written "
            "(earlier checkpoints are intact): no space left on device; a retry would fail the same "
            "way: free space there, then launch again") in run.output
    assert checkpoints(run.volume / "vol" / "probe") == ["step-00000003"]
    assert not [p for p in (run.volume / "vol" / "probe").iterdir() if p.name.startswith(".tmp-")]


def _corrupt(checkpoint: Path, how: str) -> str:
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    if how == "missing file":
        (checkpoint / "optimizer.bin").unlink()
        return "optimizer.bin is missing"
    if how == "no manifest":
        (checkpoint / "manifest.json").unlink()
        return "manifest.json is missing"
    target = checkpoint / "recipe-0.pt"
    target.write_bytes(target.read_bytes()[:-10])
    return f"recipe-0.pt has {manifest['files']['recipe-0.pt']['size'] - 10} bytes, " \
           f"the manifest says {manifest['files']['recipe-0.pt']['size']}"


@pytest.mark.parametrize("how", ["missing file", "no manifest", "truncated"])
def test_a_modified_checkpoint_is_skipped_with_a_warning(tmp_path: Path, how: str) -> None:
    spec_path = write_spec(tmp_path, probe_spec(steps=6))
    assert run_forked(spec_path).code == 0
    reason = _corrupt(tmp_path / "volumes" / "vol" / "probe" / "step-00000006", how)
    spec_path.write_text(spec_path.read_text().replace("steps: 6", "steps: 7"))
    run = run_forked(spec_path)
    assert run.code == 0, run.output
    assert f"checkpoint step-00000006 skipped: {reason}; falling back to the previous one" in run.output
    assert "resumed from step-00000003" in run.output


def test_leftover_temp_directories_are_cleaned_up(tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path, probe_spec(steps=3))
    assert run_forked(spec_path).code == 0
    volume = tmp_path / "volumes" / "vol" / "probe"
    shutil.copytree(volume / "step-00000003", volume / ".tmp-step-00000006-abc123")
    (volume / ".trash-step-00000001-ff").mkdir()
    spec_path.write_text(spec_path.read_text().replace("steps: 3", "steps: 4"))
    run = run_forked(spec_path)
    assert run.code == 0, run.output
    assert "removed leftover .tmp-step-00000006-abc123 from an earlier attempt" in run.output
    assert "removed leftover .trash-step-00000001-ff from an earlier attempt" in run.output
    assert "resumed from step-00000003" in run.output
    assert sorted(p.name for p in volume.iterdir()) == ["runs", "step-00000003", "step-00000004"]
