"""Errors keep their cause: a launcher bug is told from the user's and the platform's errors,
a volume's failure keeps its errno, and rank 0's failure reaches every rank with its type,
errno and traceback."""

from __future__ import annotations

import errno
import pickle
import sysconfig
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import accelerate.utils
import pytest

from launcher.load import load_spec
from launcher.runtime import failures, faults
from launcher.runtime.checkpoint import store
from launcher.runtime.checkpoint.manager import DistributedCheckpointer
from launcher.runtime.failures import LauncherBug, PermanentError, RankError, VolumeError
from launcher.runtime.storage.volume import LocalVolume, guarded
from launcher.runtime.train.session import Session


def _full_disk() -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _caught(call: Any) -> BaseException:
    with pytest.raises(BaseException) as info:
        call()
    return info.value


def test_a_volume_failure_is_retried_and_keeps_its_errno_and_cause() -> None:
    error = _caught(lambda: guarded(_full_disk, "checkpoint.volume vol: commit"))
    assert isinstance(error, VolumeError) and error.errno == errno.ENOSPC
    assert isinstance(error.__cause__, OSError)
    assert str(error) == "checkpoint.volume vol: commit failed: OSError: [Errno 28] No space left on device"


def test_a_bug_in_launchers_volume_code_is_a_bug_not_the_volumes_failure() -> None:
    broken = LocalVolume.__new__(LocalVolume)  # no working copy: its commit trips over itself
    error = _caught(lambda: guarded(broken.commit, "checkpoint.volume vol: commit"))
    assert isinstance(error, LauncherBug) and isinstance(error.__cause__, AttributeError)
    assert str(error).startswith("internal error (a bug in launcher): AttributeError: ")


def _mistake_in(filename: str) -> BaseException:
    """A KeyError raised by code that lives in `filename`."""
    namespace: dict[str, Any] = {}
    exec(compile("def fails(d):\n    return d['missing']\n", filename, "exec"), namespace)
    return _caught(lambda: namespace["fails"]({}))


def test_the_users_mistake_is_not_launchers_bug(tmp_path: Path) -> None:
    assert not failures.launchers_bug(_mistake_in(str(tmp_path / "users_code.py")))
    # A recipe may be an installed package: its mistakes are not launcher's either.
    installed = Path(sysconfig.get_paths()["purelib"]) / "users_package" / "recipe.py"
    assert not failures.launchers_bug(_mistake_in(str(installed)))
    # The same mistake in launcher's own code is its bug; a platform error there is not.
    assert failures.launchers_bug(_caught(lambda: store.step_name(None)))  # type: ignore[arg-type]
    assert not failures.launchers_bug(_caught(_full_disk))


def test_a_description_crosses_a_process_boundary_with_type_errno_and_traceback() -> None:
    described = pickle.loads(pickle.dumps(failures.describe(_caught(_full_disk))))
    error = failures.rebuilt(described)
    assert isinstance(error, RankError) and not isinstance(error, PermanentError)
    assert (error.kind, error.errno) == ("OSError", errno.ENOSPC)
    assert str(error) == "OSError: [Errno 28] No space left on device"
    assert "in _full_disk" in str(error.__cause__) and "Traceback" in str(error.__cause__)
    assert isinstance(failures.rebuilt(failures.describe(PermanentError("x.py:3: bad"))), PermanentError)
    wrapped = store.CheckpointError("checkpoint after update 3 not written")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert failures.describe(wrapped)["errno"] == errno.ENOSPC  # the errno of its cause
    bug = failures.rebuilt(failures.describe(KeyError("k"), bug=True))
    assert isinstance(bug, LauncherBug) and str(bug) == "internal error (a bug in launcher): KeyError: 'k'"


def _rank(index: int, tmp_path: Path) -> DistributedCheckpointer:
    manager = DistributedCheckpointer.__new__(DistributedCheckpointer)
    manager.ctx = SimpleNamespace(checkpoints=tmp_path / "job")  # type: ignore[assignment]
    manager.acc = SimpleNamespace(is_main_process=index == 0, process_index=index, local_process_index=index)
    return manager


def _broadcast_from_rank0(monkeypatch: pytest.MonkeyPatch, sent: list[Any]) -> None:
    """This process is another rank: a broadcast brings what rank 0 sent."""
    monkeypatch.setattr(accelerate.utils, "broadcast_object_list", lambda objects: objects.__setitem__(
        slice(None), sent))


def test_rank_0s_full_disk_reaches_the_other_ranks_with_its_errno(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _broadcast_from_rank0(monkeypatch, [None, failures.describe(_caught(_full_disk))])
    error = _caught(lambda: _rank(1, tmp_path)._staging_folder(6))
    assert isinstance(error, store.CheckpointError)
    assert str(error) == ("checkpoint after update 6 not written: cannot create a staging folder "
                          "(OSError: [Errno 28] No space left on device); earlier checkpoints are intact")
    assert isinstance(error.__cause__, RankError) and error.__cause__.errno == errno.ENOSPC


def test_rank_0s_failure_to_pick_is_its_own_there_and_keeps_its_class_elsewhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[Any] = []
    monkeypatch.setattr(accelerate.utils, "broadcast_object_list", lambda objects: sent.extend(objects))
    rank0 = _rank(0, tmp_path)
    full = OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(rank0, "_pick_here", lambda skip: (_ for _ in ()).throw(full))
    assert _caught(lambda: rank0._pick(())) is full  # the very exception: type, errno, cause
    # ...told to the other ranks first, which would otherwise wait for the broadcast forever.
    assert sent[1]["kind"] == "OSError" and sent[1]["errno"] == errno.ENOSPC
    refused = failures.describe(PermanentError("cannot resume from step-00000003: ..."))
    _broadcast_from_rank0(monkeypatch, [0, refused])
    error = _caught(lambda: _rank(1, tmp_path)._pick(()))
    assert type(error) is PermanentError and str(error) == "cannot resume from step-00000003: ..."


class _Done:
    """A Modal call that has returned `result`, and the log follower `launch` starts beside it."""

    def __init__(self, result: Any) -> None:
        self.result = result

    def get(self) -> Any:
        return self.result

    def terminate(self) -> None:
        pass


def test_a_bug_on_modal_is_reported_as_one_and_exits_3(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from launcher.backends import modal as backend

    error = ("internal error (a bug in launcher): TypeError: x; the traceback is in "
             "vol:probe/runs/fc-1/errors.log (checkpoint.volume)")
    monkeypatch.setattr("modal.FunctionCall.from_id", lambda call_id: _Done(
        {"status": "permanent", "error": error, "bug": True}))
    monkeypatch.setattr(backend.subprocess, "Popen", lambda argv: _Done(None))
    assert backend.follow(backend.Submission("probe", "fc-1")) == 3
    assert capsys.readouterr().err == f"job failed, not retried: {error}\n"


def test_on_modal_debug_prints_a_permanent_failures_traceback(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from launcher.backends import modal as backend

    failed = {"status": "permanent", "error": "mlp/model.py:3: ValueError: x (in stage 2, ...)",
              "traceback": 'Traceback (most recent call last):\n  File "mlp/model.py", line 3\nValueError: x\n'}
    monkeypatch.setattr("modal.FunctionCall.from_id", lambda call_id: _Done(failed))
    monkeypatch.setattr(backend.subprocess, "Popen", lambda argv: _Done(None))
    assert backend.follow(backend.Submission("probe", "fc-1")) == 1
    assert capsys.readouterr().err == f"job failed, not retried: {failed['error']}\n"
    assert backend.follow(backend.Submission("probe", "fc-1"), debug=True) == 1
    assert capsys.readouterr().err == f"{failed['traceback']}job failed, not retried: {failed['error']}\n"


@pytest.fixture
def injected_bug():
    """A bug in launcher's own code at update 2 (faults.py raises a TypeError there)."""
    faults.arm("bug:step:2")
    yield
    faults.arm(None)


def test_on_modal_a_bug_is_permanent_and_its_traceback_is_kept_on_the_volume(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, injected_bug: None) -> None:
    from runjob import probe_spec, write_spec

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROBE_DIR", str(tmp_path))
    monkeypatch.delenv("LAUNCH_RUN_DIR", raising=False)  # as on Modal: logs mirrored to the volume
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "container-tmp"))
    volume = LocalVolume(tmp_path / "volume", tmp_path / "mount")
    monkeypatch.setenv("LAUNCH_CHECKPOINT_DIR", str(volume.path))
    spec = load_spec(write_spec(tmp_path, probe_spec(steps=4))).spec
    session = Session(spec.to_dict(), volume=volume, call_id=lambda: "fc-1")
    session.stage1()
    session.stage2()
    result = session.train()
    traceback = result.pop("traceback")  # what `launch --debug` prints
    assert result == {"status": "permanent", "bug": True, "error": (
        "internal error (a bug in launcher): TypeError: an injected bug in launcher at step; the "
        "traceback is in vol:probe/runs/fc-1/errors.log (checkpoint.volume)")}
    kept = (tmp_path / "volume" / "probe" / "runs" / "fc-1" / "errors.log").read_text()  # committed
    assert "TypeError: an injected bug in launcher at step" in kept and "Traceback" in kept
    assert traceback in kept
