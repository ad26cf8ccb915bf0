from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.runtime.checkpoint import store
from launcher.runtime.checkpoint.store import CheckpointError


def writer_for(step: int):
    """A writer like ``accelerator.save_state``: files at the top and in a subdirectory."""

    def write(tmp: Path) -> None:
        (tmp / "model.safetensors").write_bytes(f"weights {step}".encode() * 1000)
        (tmp / "optimizer.bin").write_bytes(b"adam")
        (tmp / "custom").mkdir()
        (tmp / "custom" / "recipe.pkl").write_bytes(f"recipe {step}".encode())

    return write


def save(root: Path, step: int, **kwargs) -> store.Checkpoint:
    return store.save(root, step, writer_for(step), spec_hash="abc123", **kwargs)


def names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def enospc(tmp: Path) -> None:
    (tmp / "model.safetensors").write_bytes(b"partial")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class Recorder:
    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.warnings: list[str] = []

    def load(self, ckpt: store.Checkpoint) -> None:
        self.loaded.append(ckpt.path.name)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def test_round_trip(tmp_path: Path) -> None:
    saved = [save(tmp_path, step) for step in (100, 200, 300)]
    found = store.complete(tmp_path)
    assert found == saved[::-1]
    assert [c.path.name for c in found] == ["step-00000300", "step-00000200", "step-00000100"]
    assert names(tmp_path) == ["step-00000100", "step-00000200", "step-00000300"]
    for ckpt in found:
        store.verify(ckpt)
    assert (found[0].path / "custom" / "recipe.pkl").read_bytes() == b"recipe 300"


def test_manifest_content(tmp_path: Path) -> None:
    ckpt = store.save(
        tmp_path, 100, writer_for(100), spec_hash="abc123", extra={"hidden": 64}
    )
    on_disk = json.loads((tmp_path / "step-00000100" / "manifest.json").read_text())
    assert on_disk == ckpt.manifest
    model = (tmp_path / "step-00000100" / "model.safetensors").read_bytes()
    assert on_disk["files"] == {
        "custom/recipe.pkl": {
            "size": 10, "sha256": hashlib.sha256(b"recipe 100").hexdigest()},
        "model.safetensors": {"size": len(model), "sha256": hashlib.sha256(model).hexdigest()},
        "optimizer.bin": {"size": 4, "sha256": hashlib.sha256(b"adam").hexdigest()},
    }
    assert on_disk["format"] == 1
    assert on_disk["step"] == 100
    assert on_disk["spec_hash"] == "abc123"
    assert on_disk["extra"] == {"hidden": 64}
    assert on_disk["created"].endswith("+00:00")
    versions = on_disk["versions"]
    assert versions["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert set(versions) == {"python", "torch", "accelerate", "launcher"}


def test_large_file_hashed_in_chunks(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)
    ckpt = store.save(
        tmp_path, 1, lambda tmp: (tmp / "big.bin").write_bytes(data), spec_hash="h"
    )
    assert ckpt.manifest["files"]["big.bin"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_module_imports_stdlib_only() -> None:
    code = (
        "import sys, launcher.runtime.checkpoint.store as c\n"
        "c._versions()\n"
        "bad = {'torch', 'accelerate', 'click', 'jinja2', 'jsonschema'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_retention_keeps_exactly_keep_last(tmp_path: Path) -> None:
    for step in (100, 200, 300, 400):
        save(tmp_path, step, keep_last=2)
    assert names(tmp_path) == ["step-00000300", "step-00000400"]


def test_retention_runs_only_after_the_new_checkpoint_is_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save(tmp_path, 100)
    discard = store._discard
    seen: list[list[int]] = []

    def spy(path: Path) -> None:
        seen.append([c.step for c in store.complete(tmp_path)])
        discard(path)

    monkeypatch.setattr(store, "_discard", spy)
    save(tmp_path, 200, keep_last=1)
    assert seen == [[200, 100]]
    assert names(tmp_path) == ["step-00000200"]


def test_retention_never_removes_the_checkpoint_just_saved(tmp_path: Path) -> None:
    # After a fallback the run re-saves below a newer (failed) checkpoint.
    save(tmp_path, 100)
    save(tmp_path, 300)
    save(tmp_path, 200, keep_last=1)
    assert names(tmp_path) == ["step-00000200", "step-00000300"]


def test_failed_save_removes_nothing_and_leaves_no_temp(tmp_path: Path) -> None:
    for step in (100, 200):
        save(tmp_path, step, keep_last=2)
    with pytest.raises(CheckpointError):
        store.save(tmp_path, 300, enospc, spec_hash="abc123", keep_last=2)
    assert names(tmp_path) == ["step-00000100", "step-00000200"]
    for ckpt in store.complete(tmp_path):
        store.verify(ckpt)


def test_enospc_message(tmp_path: Path) -> None:
    save(tmp_path, 100)
    with pytest.raises(store.StorageRefused) as info:  # permanent: no retry frees the disk
        store.save(tmp_path, 200, enospc, spec_hash="abc123")
    assert str(info.value) == (
        f"{tmp_path}: checkpoint after update 200 not written (earlier checkpoints are intact): "
        "no space left on device; a retry would fail the same way: free space there, then launch again"
    )
    assert names(tmp_path) == ["step-00000100"]


def test_enospc_while_hashing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(path: Path, *, fsync: bool = False) -> str:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store, "_sha256", no_space)
    with pytest.raises(store.StorageRefused, match=r"^/.*: checkpoint after update 100 not written "
                                                  r"\(earlier checkpoints are intact\): no space"):
        save(tmp_path, 100)
    assert names(tmp_path) == []


def test_non_os_error_from_writer(tmp_path: Path) -> None:
    def broken(tmp: Path) -> None:
        raise RuntimeError("CUDA error: out of memory")

    with pytest.raises(CheckpointError) as info:
        store.save(tmp_path, 100, broken, spec_hash="abc123")
    assert str(info.value) == (
        "checkpoint after update 100 not written: RuntimeError: CUDA error: out of memory; "
        "earlier checkpoints are intact"
    )
    assert names(tmp_path) == []


def test_interrupt_during_write_removes_temp_and_propagates(tmp_path: Path) -> None:
    def interrupted(tmp: Path) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.save(tmp_path, 100, interrupted, spec_hash="abc123")
    assert names(tmp_path) == []


def test_resave_replaces_existing_step(tmp_path: Path) -> None:
    save(tmp_path, 100)
    store.save(
        tmp_path, 100, lambda tmp: (tmp / "new.bin").write_bytes(b"new"), spec_hash="second"
    )
    assert names(tmp_path) == ["step-00000100"]
    (ckpt,) = store.complete(tmp_path)
    assert ckpt.manifest["spec_hash"] == "second"
    assert sorted(ckpt.manifest["files"]) == ["new.bin"]
    assert sorted(p.name for p in ckpt.path.iterdir()) == ["manifest.json", "new.bin"]


def test_failed_resave_keeps_the_old_one(tmp_path: Path) -> None:
    save(tmp_path, 100)
    with pytest.raises(CheckpointError):
        store.save(tmp_path, 100, enospc, spec_hash="second")
    (ckpt,) = store.complete(tmp_path)
    assert ckpt.manifest["spec_hash"] == "abc123"
    store.verify(ckpt)


def test_writer_may_not_write_the_manifest(tmp_path: Path) -> None:
    def sneaky(tmp: Path) -> None:
        (tmp / "manifest.json").write_text("{}")

    with pytest.raises(CheckpointError, match=r"^checkpoint after update 1 not written: File exists"):
        store.save(tmp_path, 1, sneaky, spec_hash="h")
    assert names(tmp_path) == []


def test_killed_mid_write_is_never_returned(tmp_path: Path) -> None:
    save(tmp_path, 100)
    partial = tmp_path / ".tmp-step-00000200-x1y2"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    (tmp_path / ".trash-step-00000050-abcd").mkdir()
    rec = Recorder()
    assert [c.step for c in store.complete(tmp_path)] == [100]
    assert store.newest_usable(tmp_path, rec.load, rec.warn).step == 100
    assert rec.warnings == []


def test_clean_temp(tmp_path: Path) -> None:
    save(tmp_path, 100)
    (tmp_path / ".tmp-step-00000200-x1y2" / "sub").mkdir(parents=True)
    (tmp_path / ".trash-step-00000050-abcd").mkdir()
    (tmp_path / ".tmp-lease.json-123").write_text("{}")
    assert store.clean_temp(tmp_path) == [
        ".tmp-lease.json-123", ".tmp-step-00000200-x1y2", ".trash-step-00000050-abcd"]
    assert names(tmp_path) == ["step-00000100"]
    assert store.clean_temp(tmp_path) == []


def test_missing_root(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    rec = Recorder()
    assert store.clean_temp(missing) == []
    assert store.complete(missing) == []
    assert store.newest_usable(missing, rec.load, rec.warn) is None
    assert rec.warnings == []


def truncate(path: Path) -> None:
    (path / "model.safetensors").write_bytes(b"short")


def flip_byte(path: Path) -> None:
    target = path / "model.safetensors"
    data = bytearray(target.read_bytes())
    data[10] ^= 0xFF
    target.write_bytes(bytes(data))


def delete_file(path: Path) -> None:
    (path / "custom" / "recipe.pkl").unlink()


def delete_manifest(path: Path) -> None:
    (path / "manifest.json").unlink()


def garble_manifest(path: Path) -> None:
    (path / "manifest.json").write_text("{not json")


def wrong_step_manifest(path: Path) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["step"] = 7
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("corrupt", "reason"),
    [
        (truncate, "model.safetensors has 5 bytes, the manifest says 11000"),
        (flip_byte, "model.safetensors does not match its sha256 in the manifest"),
        (delete_file, "custom/recipe.pkl is missing"),
        (delete_manifest, "manifest.json is missing"),
        (garble_manifest, "manifest.json is unreadable: JSONDecodeError: Expecting property "
                          "name enclosed in double quotes: line 1 column 2 (char 1)"),
        (wrong_step_manifest, "manifest.json is not a format-1 manifest for step 300"),
    ],
)
def test_corrupt_newest_falls_back(tmp_path: Path, corrupt, reason: str) -> None:
    for step in (100, 200, 300):
        save(tmp_path, step)
    corrupt(tmp_path / "step-00000300")
    rec = Recorder()
    found = store.newest_usable(tmp_path, rec.load, rec.warn)
    assert found is not None and found.step == 200
    assert rec.loaded == ["step-00000200"]
    assert rec.warnings == [
        f"checkpoint step-00000300 skipped: {reason}; falling back to the previous one"]


def test_verify_names_the_file(tmp_path: Path) -> None:
    ckpt = save(tmp_path, 100)
    delete_file(ckpt.path)
    with pytest.raises(CheckpointError, match=r"^custom/recipe\.pkl is missing$"):
        store.verify(ckpt)


def test_verify_tolerates_extra_files(tmp_path: Path) -> None:
    ckpt = save(tmp_path, 100)
    (ckpt.path / "notes.txt").write_text("added later")
    store.verify(ckpt)


def test_load_failure_falls_back(tmp_path: Path) -> None:
    for step in (100, 200):
        save(tmp_path, step)
    rec = Recorder()

    def load(ckpt: store.Checkpoint) -> None:
        if ckpt.path.name == "step-00000200":
            raise RuntimeError("size mismatch for fc.weight")
        rec.load(ckpt)

    found = store.newest_usable(tmp_path, load, rec.warn)
    assert found is not None and found.step == 100
    assert rec.warnings == [
        "checkpoint step-00000200 skipped: RuntimeError: size mismatch for fc.weight; "
        "falling back to the previous one"]


def test_nothing_loadable(tmp_path: Path) -> None:
    for step in (100, 200):
        save(tmp_path, step)
    truncate(tmp_path / "step-00000200")
    delete_manifest(tmp_path / "step-00000100")
    rec = Recorder()
    assert store.newest_usable(tmp_path, rec.load, rec.warn) is None
    assert rec.loaded == []
    assert rec.warnings == [
        "checkpoint step-00000200 skipped: model.safetensors has 5 bytes, the manifest says "
        "11000; falling back to the previous one",
        "checkpoint step-00000100 skipped: manifest.json is missing; "
        "no earlier checkpoint to fall back to",
    ]


def test_steps_loaded_before_and_failed_are_passed_over(tmp_path: Path) -> None:
    for step in (100, 200, 300):
        save(tmp_path, step)
    rec = Recorder()
    found = store.newest_usable(tmp_path, rec.load, rec.warn, skip={300, 200})
    assert found is not None and found.step == 100 and rec.warnings == []
    assert store.earlier_than(tmp_path, 200, skip={100}) is False
    assert store.earlier_than(tmp_path, 300, skip={100}) is True


def test_an_incompatible_checkpoint_stops_the_search(tmp_path: Path) -> None:
    for step in (100, 200):
        save(tmp_path, step)

    def refuse(ckpt: store.Checkpoint) -> None:
        raise store.Incompatible(f"cannot resume from {ckpt.path.name}")

    with pytest.raises(store.Incompatible, match="^cannot resume from step-00000200$"):
        store.newest_usable(tmp_path, refuse, Recorder().warn)


def test_checkpoints_at_a_volume_s_top_level_are_named(tmp_path: Path) -> None:
    for step in (100, 200):
        save(tmp_path, step)
    save(tmp_path / "job", 300)
    assert store.top_level(tmp_path) == ["step-00000100", "step-00000200"]
    assert store.top_level(tmp_path / "job") == ["step-00000300"]


def test_complete_skips_broken_manifests(tmp_path: Path) -> None:
    for step in (100, 200):
        save(tmp_path, step)
    garble_manifest(tmp_path / "step-00000200")
    (tmp_path / "step-00000300").mkdir()  # a directory with no manifest at all
    (tmp_path / "step-00000400").write_text("a file, not a checkpoint")
    assert [c.step for c in store.complete(tmp_path)] == [100]


def test_keep_last_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^keep_last must be at least 1, got 0$"):
        save(tmp_path, 100, keep_last=0)
    assert names(tmp_path) == []


def _full_disk(monkeypatch: pytest.MonkeyPatch, where: Path) -> None:
    """The filesystem under `where` says it is full (os.statvfs, as after a write filled it)."""
    real = os.statvfs

    def statvfs(path: str | os.PathLike[str]) -> os.statvfs_result:
        found = real(path)
        if not Path(path).resolve().is_relative_to(where.resolve()):
            return found
        fields = list(found)
        fields[4] = 0  # f_bavail
        return os.statvfs_result(fields)

    monkeypatch.setattr(os, "statvfs", statvfs)


def test_a_full_disk_behind_a_library_s_own_message_is_said_as_a_full_disk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's zip writer reports a full disk without the OS error: the filesystem is asked."""
    def torch_save(tmp: Path) -> None:
        (tmp / "optimizer.bin").write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 960 vs 854")

    save(tmp_path, 100)
    _full_disk(monkeypatch, tmp_path)
    with pytest.raises(store.StorageRefused) as info:
        store.save(tmp_path, 200, torch_save, spec_hash="abc123")
    assert str(info.value) == (
        f"{tmp_path}: checkpoint after update 200 not written (earlier checkpoints are intact): "
        "no space left on device; a retry would fail the same way: free space there, then launch again"
    )
    assert "inline_container" not in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000100"]  # the partial file is gone


def test_the_same_failure_with_room_on_the_disk_is_not_called_a_full_disk(tmp_path: Path) -> None:
    def torch_save(tmp: Path) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 960 vs 854")

    with pytest.raises(CheckpointError) as info:
        store.save(tmp_path, 100, torch_save, spec_hash="abc123")
    assert not isinstance(info.value, store.StorageRefused)


def test_a_rust_library_s_os_error_is_read(tmp_path: Path) -> None:
    def safetensors_save(tmp: Path) -> None:
        raise RuntimeError("Error while serializing: I/O error: Read-only file system (os error 30)")

    with pytest.raises(store.StorageRefused, match=r": read-only file system; a retry would fail "
                                                  r"the same way: make it writable"):
        store.save(tmp_path, 100, safetensors_save, spec_hash="abc123")


def test_links_are_never_checkpoints_nor_cleaned_through(tmp_path: Path) -> None:
    """A step folder or a leftover that is a symbolic link out of the job's folder is never
    loaded, retained or followed: the link goes (a leftover), what it points to stays."""
    root, outside = tmp_path / "job", tmp_path / "outside"
    save(root, 100)
    shutil.copytree(root / "step-00000100", outside / "step-00000900")
    (outside / "keep.txt").write_text("not the job's")
    (root / "step-00000900").symlink_to(outside / "step-00000900")
    (root / ".trash-step-00000050-ab").symlink_to(outside)
    assert [c.step for c in store.complete(root)] == [100]
    assert store.newest_usable(root, lambda c: None, print).step == 100
    assert store.clean_temp(root) == [".trash-step-00000050-ab"]
    assert store.clean_temp(root) == []  # gone, not reported again on every run
    assert (outside / "keep.txt").read_text() == "not the job's"
    assert (outside / "step-00000900" / store.MANIFEST).is_file()
