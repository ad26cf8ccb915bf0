"""The local volume keeps Modal's semantics: uncommitted writes are invisible to others and lost
with the working copy, `reload()` shows others' commits under this copy's own changes, and a
commit applies only this copy's changes (two jobs on one volume never undo each other)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from launcher.runtime.failures import VolumeError
from launcher.runtime.storage import tree
from launcher.runtime.storage.disk import StorageError
from launcher.runtime.storage.volume import LocalVolume


def files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def write(path: Path, text: str) -> None:
    """As the runtime writes: a new file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_writes_are_invisible_until_committed_and_lost_without_a_commit(tmp_path: Path) -> None:
    committed = tmp_path / "vol"
    volume = LocalVolume(committed, tmp_path / "work-1")
    write(volume.path / "job" / "step-1" / "model", "m1")
    assert files(committed) == {}
    volume.commit()
    assert files(committed) == {"job/step-1/model": "m1"}
    write(volume.path / "job" / "step-2" / "model", "m2")
    shutil.rmtree(volume.path)  # the worker died; the supervisor discards its copy
    again = LocalVolume(committed, tmp_path / "work-2")
    assert files(again.path) == {"job/step-1/model": "m1"}


def test_a_commit_applies_only_this_copy_s_changes(tmp_path: Path) -> None:
    committed = tmp_path / "vol"
    write(committed / "a" / "step-1" / "model", "a1")
    write(committed / "b" / "step-1" / "model", "b1")
    job_a = LocalVolume(committed, tmp_path / "work-a")
    job_b = LocalVolume(committed, tmp_path / "work-b")
    write(job_b.path / "b" / "step-2" / "model", "b2")
    shutil.rmtree(job_b.path / "b" / "step-1")  # retention in job b
    job_b.commit()
    write(job_a.path / "a" / "step-2" / "model", "a2")
    write(job_a.path / "a" / "lease.json", "a")
    job_a.commit()  # job a's copy still has b/step-1 and lacks b/step-2: neither is touched
    assert files(committed) == {"a/lease.json": "a", "a/step-1/model": "a1", "a/step-2/model": "a2",
                                "b/step-2/model": "b2"}


def test_reload_shows_others_commits_and_keeps_uncommitted_changes(tmp_path: Path) -> None:
    committed = tmp_path / "vol"
    mine = LocalVolume(committed, tmp_path / "work-1")
    other = LocalVolume(committed, tmp_path / "work-2")
    write(other.path / "x" / "step-1" / "model", "x1")
    other.commit()
    write(mine.path / "y" / "draft", "uncommitted")
    assert files(mine.path) == {"y/draft": "uncommitted"}
    mine.reload()
    assert files(mine.path) == {"x/step-1/model": "x1", "y/draft": "uncommitted"}
    assert files(committed) == {"x/step-1/model": "x1"}
    mine.commit()
    assert files(committed) == {"x/step-1/model": "x1", "y/draft": "uncommitted"}


def test_a_replaced_file_and_a_renamed_folder_are_committed(tmp_path: Path) -> None:
    committed = tmp_path / "vol"
    volume = LocalVolume(committed, tmp_path / "work")
    write(volume.path / "job" / "lease.json", "beat 1")
    volume.commit()
    write(volume.path / "job" / "lease.json", "beat 2")
    (volume.path / "job" / ".tmp-step-3").mkdir()
    write(volume.path / "job" / ".tmp-step-3" / "model", "m3")
    os.rename(volume.path / "job" / ".tmp-step-3", volume.path / "job" / "step-3")
    volume.commit()
    assert files(committed) == {"job/lease.json": "beat 2", "job/step-3/model": "m3"}


def test_diff_names_the_topmost_deleted_paths_and_new_folders() -> None:
    before = {"j": tree.DIR, "j/s1": tree.DIR, "j/s1/m": 1, "j/s1/o": 2, "j/lease": 3}
    after = {"j": tree.DIR, "j/s2": tree.DIR, "j/s2/m": 4, "j/lease": 5}
    changes = tree.diff(before, after)
    assert (changes.files, changes.dirs, changes.deleted) == (["j/lease", "j/s2/m"], ["j/s2"], ["j/s1"])
    assert not tree.diff(after, dict(after))


def test_processes_sharing_a_working_copy_may_commit_the_same_change_twice(tmp_path: Path) -> None:
    """A forked rank commits; the container's main process, whose record of the last commit is
    older, commits the same working copy again (its final commit): nothing changes, nothing fails."""
    committed = tmp_path / "vol"
    main = LocalVolume(committed, tmp_path / "work")
    write(main.path / "job" / "lease.json", "held")
    main.commit()
    rank0 = LocalVolume.__new__(LocalVolume)
    rank0.__dict__.update(main.__dict__)  # what fork gives the rank: the same copy, the same record
    write(rank0.path / "job" / "step-3" / "model", "m3")
    write(rank0.path / "job" / "step-3" / "optimizer", "o3")
    rank0.commit()
    main.commit()
    (main.path / "job" / "lease.json").unlink()
    main.commit()
    assert files(committed) == {"job/step-3/model": "m3", "job/step-3/optimizer": "o3"}


def test_a_commit_changes_nothing_outside_its_job_s_folder(tmp_path: Path) -> None:
    committed = tmp_path / "vol"
    write(committed / "other" / "step-1" / "model", "o1")
    write(committed / "top.txt", "a user's file")
    mine = LocalVolume(committed, tmp_path / "work", job="mine")
    shutil.rmtree(mine.path / "other")  # someone cleaned the working copy as scratch space
    (mine.path / "top.txt").unlink()
    write(mine.path / "stray.txt", "written outside the job's folder")
    write(mine.path / "mine" / "step-1" / "model", "m1")
    mine.commit()
    assert files(committed) == {"mine/step-1/model": "m1", "other/step-1/model": "o1",
                                "top.txt": "a user's file"}


def test_a_removed_working_copy_fails_the_commit_and_leaves_the_volume_as_it_was(tmp_path: Path) -> None:
    committed = tmp_path / "vol"
    write(committed / "other" / "data" / "x", "theirs")
    write(committed / "mine" / "step-1" / "model", "m1")
    volume = LocalVolume(committed, tmp_path / "work", job="mine")
    before = files(committed)
    shutil.rmtree(volume.path)  # `rm -rf .launch/volumes/@work` while the run goes on
    write(volume.path / "mine" / "step-2" / "model", "m2")  # the next save makes its folders again
    with pytest.raises(VolumeError, match=rf"^{volume.path}: this attempt's working copy of the volume "
                                          r"was removed or replaced while it ran; not committed"):
        volume.commit()
    assert files(committed) == before
    volume.commit()  # the container's final commit: said once, and still nothing applied
    assert files(committed) == before


def test_a_replaced_job_folder_fails_the_commit(tmp_path: Path) -> None:
    committed = tmp_path / "vol"
    write(committed / "mine" / "step-1" / "model", "m1")
    write(committed / "mine" / "data" / "digits.pt", "data")
    volume = LocalVolume(committed, tmp_path / "work", job="mine")
    shutil.rmtree(volume.path / "mine")
    write(volume.path / "mine" / "step-2" / "model", "m2")
    with pytest.raises(VolumeError, match="removed or replaced"):
        volume.commit()
    assert files(committed) == {"mine/data/digits.pt": "data", "mine/step-1/model": "m1"}


def test_a_removed_working_copy_fails_a_reload_too(tmp_path: Path) -> None:
    committed = tmp_path / "vol"
    write(committed / "mine" / "step-1" / "model", "m1")
    volume = LocalVolume(committed, tmp_path / "work", job="mine")
    shutil.rmtree(volume.path)
    with pytest.raises(VolumeError, match="removed or replaced while it ran; not reloaded"):
        volume.reload()
    assert files(committed) == {"mine/step-1/model": "m1"}


def test_a_job_folder_made_by_the_run_is_watched_from_its_first_commit(tmp_path: Path) -> None:
    committed = tmp_path / "vol"
    volume = LocalVolume(committed, tmp_path / "work", job="mine")
    write(volume.path / "mine" / "step-1" / "model", "m1")
    volume.commit()
    shutil.rmtree(volume.path / "mine")
    with pytest.raises(VolumeError):
        volume.commit()
    assert files(committed) == {"mine/step-1/model": "m1"}


def test_a_read_only_volume_is_a_storage_error_naming_the_volume(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The OS boundary: linking into the committed folder fails as on a read-only mount."""
    committed = tmp_path / "vol"
    volume = LocalVolume(committed, tmp_path / "work", job="mine")
    write(volume.path / "mine" / "step-1" / "model", "m1")

    def read_only(src: object, dst: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(src), None, str(dst))

    monkeypatch.setattr(os, "link", read_only)
    with pytest.raises(StorageError, match=rf"^{committed}: cannot commit to the volume: read-only file "
                                           r"system; a retry would fail the same way: make it writable"):
        volume.commit()
