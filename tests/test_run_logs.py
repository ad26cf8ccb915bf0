"""Each run keeps its logs in a folder of its own, named by its id, locally and on the volume:
a failure is told in one line that names the user's own code, its full traceback is kept there
for every attempt (and printed with --debug); TensorBoard shows each run apart, with the
resolved spec as its hyperparameters; W&B's offline run holds the config and the metrics."""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import pytest
from runjob import probe_spec, write_spec

from launcher.load import load_spec
from launcher.runtime.storage.volume import LocalVolume
from launcher.runtime.train.session import Session

FAULT_TOOLS = str(Path(__file__).resolve().parent / "fault")
if FAULT_TOOLS not in sys.path:
    sys.path.insert(0, FAULT_TOOLS)

from forkrun import launch_forked  # noqa: E402

# The user's package: a recipe (broken.py) that calls a helper module (model.py), which
# raises from update 3 on.
BROKEN = '''\
from probe_recipe import Probe

from mlp.model import forward


class Broken(Probe):
    def train_step(self, step):
        forward(step)
        return super().train_step(step)
'''
MODEL = '''\
def forward(step):
    if step >= 2:
        raise ValueError(f"expected 8 features in update {step + 1}, got 3")
'''
ERROR = "mlp/model.py:3: ValueError: expected 8 features in update 3, got 3"


def _user_package(folder: Path, **spec: object) -> Path:
    path = write_spec(folder, probe_spec(steps=6, **spec))
    (folder / "mlp").mkdir()
    (folder / "mlp" / "__init__.py").write_text("")
    (folder / "mlp" / "broken.py").write_text(BROKEN)
    (folder / "mlp" / "model.py").write_text(MODEL)
    return path


@pytest.fixture
def own_mlp():
    """A test that imports the user's package in this process imports its own copy, and leaves
    none behind for the next (each test writes its own `mlp` in its own folder)."""
    def forget() -> None:
        for name in [n for n in sys.modules if n == "mlp" or n.startswith("mlp.")]:
            del sys.modules[name]
    forget()
    yield
    forget()


def _local_dir(tmp_path: Path) -> Path:
    import os

    return Path(os.environ.get("LAUNCH_LOCAL_DIR") or tmp_path / ".launch")  # the suite isolates it


def _both_frames(log: str) -> None:
    """The whole way there: the recipe's call, then the helper's raise."""
    assert re.search(r'mlp/broken\.py", line 8, in train_step\n.*\n.*\n?  File ".*mlp/model\.py", line 3, '
                     r"in forward", log), log
    assert "ValueError: expected 8 features in update 3, got 3" in log


def test_a_failure_in_a_helper_module_after_the_first_update_names_the_users_frame(tmp_path: Path) -> None:
    run = launch_forked(_user_package(tmp_path, retries={"max_retries": 1},
                                      train={"recipe": "mlp.broken:Broken"}))
    assert run.code == 1, run.output
    assert "attempts     2 (1: transient, 2: transient)" in run.output
    found = re.search(rf"  error        {re.escape(ERROR)}; the traceback is in (\S+errors\.log)\n",
                      run.output)
    assert found, run.output
    kept = Path(found[1])
    run_id = kept.parent.name
    assert kept.parent.parent == _local_dir(tmp_path) / "runs" / "probe"  # the run's own folder
    log = kept.read_text()
    assert re.findall(r"^### .* run (\S+) attempt (\d)", log, re.M) == [(run_id, "1"), (run_id, "2")]
    _both_frames(log)
    # The same log on the volume, in the job's folder, named by the run.
    assert (run.volume / "vol" / "probe" / "runs" / run_id / "errors.log").read_text() == log
    assert "Traceback" not in run.output  # one line, not the traceback


def test_debug_prints_the_whole_traceback(tmp_path: Path) -> None:
    run = launch_forked(_user_package(tmp_path, retries={"max_retries": 0},
                                      train={"recipe": "mlp.broken:Broken"}), "--debug")
    assert run.code == 1, run.output
    _both_frames(run.output)


def test_debug_prints_the_traceback_of_a_failure_before_the_first_update(tmp_path: Path) -> None:
    path = _user_package(tmp_path, train={"recipe": "mlp.broken:Broken"})
    (tmp_path / "mlp" / "model.py").write_text(MODEL.replace("step >= 2", "step >= 0"))
    quiet = launch_forked(path)
    assert "error        mlp/model.py:3: ValueError" in quiet.output and "before the first update" in quiet.output
    assert "Traceback" not in quiet.output
    loud = launch_forked(path, "--debug")
    assert loud.code == 1, loud.output
    assert re.search(r'mlp/broken\.py", line 8, in train_step', loud.output), loud.output
    assert re.search(r'mlp/model\.py", line 3, in forward', loud.output), loud.output


def test_on_modal_each_attempt_of_a_run_adds_its_traceback_to_the_volume(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], own_mlp: None) -> None:
    """The container's path: no LAUNCH_RUN_DIR (logs in a temporary folder, copied to the
    volume), the run named by the call id; a retry is a fresh container of the same call."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PROBE_DIR", str(tmp_path))
    monkeypatch.delenv("LAUNCH_RUN_DIR", raising=False)
    monkeypatch.delenv("LAUNCH_RUN_ID", raising=False)
    spec = load_spec(_user_package(tmp_path, train={"recipe": "mlp.broken:Broken"})).spec
    for attempt in (1, 2):
        (tmp_path / f"container-{attempt}").mkdir()  # each container's own temporary folder
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / f"container-{attempt}"))
        volume = LocalVolume(tmp_path / "volume", tmp_path / f"mount-{attempt}")
        monkeypatch.setenv("LAUNCH_CHECKPOINT_DIR", str(volume.path))
        session = Session(spec.to_dict(), volume=volume, call_id=lambda: "fc-1")
        session.stage1()
        session.stage2()
        with pytest.raises(ValueError):  # transient: Modal retries it
            session.train()
        volume.commit()  # the container's final commit
        assert (f"[launch] error: {ERROR}; the traceback is in vol:probe/runs/fc-1/errors.log "
                "(checkpoint.volume)") in capfd.readouterr().err
    log = (tmp_path / "volume" / "probe" / "runs" / "fc-1" / "errors.log").read_text()
    assert len(re.findall(r"^### .* run fc-1 pid", log, re.M)) == 2  # both containers' attempts
    _both_frames(log)


# -- TensorBoard -------------------------------------------------------------------------------


def _tensorboard_run(folder: Path) -> tuple[dict[str, object], list[float]]:
    """A TensorBoard run's hyperparameters and its `loss` scalars, read as TensorBoard reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(folder))
    acc.Reload()
    data = plugin_data_pb2.HParamsPluginData.FromString(
        acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content)
    hparams = {k: getattr(v, v.WhichOneof("kind")) for k, v in data.session_start_info.hparams.items()}
    return hparams, [event.value for event in acc.Scalars("loss")]


def test_two_runs_are_two_tensorboard_runs_each_with_the_resolved_spec(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, probe_spec(steps=3, train={"tracker": "tensorboard",
                                                           "config": {"lr": 0.01}}))
    assert launch_forked(spec).code == 0
    assert launch_forked(spec, "--set", "train.steps=6").code == 0  # resumes: updates 4 to 6
    runs = _local_dir(tmp_path) / "runs" / "probe"
    folders = [p for p in runs.iterdir() if p.is_dir()]
    assert len(folders) == 2
    steps = set()
    for folder in folders:
        assert [p for p in folder.iterdir() if p.is_dir()] == []  # no hparams subfolders
        hparams, losses = _tensorboard_run(folder)
        assert len(losses) == 3
        assert hparams["run"] == folder.name
        assert (hparams["train.config.lr"], hparams["name"]) == (0.01, "probe")
        steps.add(hparams["train.steps"])
        # The resolved spec: defaults included, a list as its JSON text.
        assert (hparams["retries.max_retries"], hparams["checkpoint.resume"]) == (2, "auto")
        assert hparams["compute.gpu"] == "[]"
        on_volume = tmp_path / "volumes" / "vol" / "probe" / "runs" / folder.name
        events = {p.name for p in folder.glob("events.out.tfevents.*")}
        assert events and events <= {p.name for p in on_volume.iterdir()}  # beside the run's record
    assert steps == {3, 6}  # each run its own spec


def test_a_retry_writes_into_its_runs_tensorboard_folder(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, probe_spec(steps=4, train={"tracker": "tensorboard"}))
    run = launch_forked(spec, env={"LAUNCH_FAULT": "econnreset:step:2"})
    assert run.code == 0 and "attempts     2 (1: transient, 2: finished)" in run.output, run.output
    [folder] = [p for p in (_local_dir(tmp_path) / "runs" / "probe").iterdir() if p.is_dir()]
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2  # one per attempt, one run
    _, losses = _tensorboard_run(folder)
    assert len(losses) >= 4  # update 3 and 4 again after the resume from update 3's checkpoint


# -- W&B -----------------------------------------------------------------------------------------


def test_a_wandb_offline_run_holds_the_config_and_the_metrics(tmp_path: Path) -> None:
    import wandb_log

    spec = write_spec(tmp_path, probe_spec(steps=3, train={"tracker": "wandb", "config": {"lr": 0.02}}))
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true",
           # Nothing may leave the machine: a server that does not exist.
           "WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_API_KEY": "x" * 40}
    run = launch_forked(spec, env=env)
    assert run.code == 0, run.output
    [folder] = [p for p in (_local_dir(tmp_path) / "runs" / "probe").iterdir() if p.is_dir()]
    [log] = folder.glob("wandb/offline-run-*/run-*.wandb")  # in the run's own folder
    records = wandb_log.records(log)
    [started] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (started.project, started.display_name, started.run_id) == ("probe", folder.name, folder.name)
    config = wandb_log.run_config(records)
    assert (config["train.steps"], config["train.config.lr"], config["run"]) == (3, 0.02, folder.name)
    assert config["checkpoint.volume"] == "vol"
    losses = [(h["_step"], h["loss"]) for h in wandb_log.history(records) if "loss" in h]
    assert [step for step, _ in losses] == [1, 2, 3]
    # The offline run goes to the volume with the run's other logs.
    on_volume = tmp_path / "volumes" / "vol" / "probe" / "runs" / folder.name / log.relative_to(folder)
    assert on_volume.is_file()


def test_without_wandb_a_wandb_job_is_refused_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launch) -> None:
    from launcher import extras

    findable = extras._findable
    monkeypatch.setattr(extras, "_findable", lambda name: name != "wandb" and findable(name))
    spec = write_spec(tmp_path, probe_spec(steps=1, train={"tracker": "wandb"}))
    monkeypatch.chdir(tmp_path)
    result = launch(str(spec), "--local", "--volumes-dir", str(tmp_path / "volumes"))
    assert result.code == 1
    assert re.fullmatch(rf"{re.escape(str(spec))}: train.tracker: wandb: W&B is not installed \(no wandb\); "
                        r"install it with: pip install .*\[wandb\]'?\n", result.err), result.err


def test_a_warm_container_logs_each_call_once_into_its_own_runs_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROBE_DIR", str(tmp_path))
    monkeypatch.setenv("LAUNCH_RUN_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("LAUNCH_RUN_ID", raising=False)
    volume = LocalVolume(tmp_path / "volume", tmp_path / "mount")
    monkeypatch.setenv("LAUNCH_CHECKPOINT_DIR", str(volume.path))
    spec = load_spec(write_spec(tmp_path, probe_spec(steps=2, train={"tracker": "tensorboard"}))).spec
    calls = iter(["fc-1", "fc-2"])
    call = {"id": next(calls)}
    session = Session(spec.to_dict(), volume=volume, call_id=lambda: call["id"])
    session.stage1()
    session.stage2()
    assert session.train()["status"] == "finished"
    call["id"] = next(calls)
    assert session.train(steps=4)["status"] == "finished"  # the same container, the next call
    for run, steps in (("fc-1", [1, 2]), ("fc-2", [3, 4])):
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(tmp_path / "runs" / run))
        acc.Reload()
        assert [event.step for event in acc.Scalars("loss")] == steps


def test_a_stages_failure_names_the_users_frame_and_joins_its_runs_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], own_mlp: None) -> None:
    """A pipeline's prepare, on Modal: the run is its driver's call; its prepare function calls
    a helper that raises."""
    from launcher.runtime.lease import Lease
    from launcher.runtime.pipeline.stage_session import StageSession

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("LAUNCH_RUN_DIR", raising=False)
    monkeypatch.delenv("LAUNCH_RUN_ID", raising=False)
    (tmp_path / "container").mkdir()  # the container's own temporary folder
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "container"))
    path = _user_package(tmp_path, stages={"prepare": {"run": "mlp.prep:prepare", "retries": 0}})
    (tmp_path / "mlp" / "prep.py").write_text("from mlp.model import forward\n\n\n"
                                              "def prepare(ctx):\n    forward(5)\n")
    volume = LocalVolume(tmp_path / "volume", tmp_path / "mount")
    monkeypatch.setenv("LAUNCH_CHECKPOINT_DIR", str(volume.path))
    Lease(volume.path / "probe", volume, job="probe", volume_name="vol", every_s=None,
          timeout_s=3600, stale_s=3600).acquire("fc-driver")
    session = StageSession(load_spec(path).spec.to_dict(), "prepare", volume=volume, call_id=lambda: "fc-1")
    session.stage1()
    session.stage2()
    with pytest.raises(ValueError):
        session.run(lease="fc-driver")
    assert ("[launch] error: mlp/model.py:3: ValueError: expected 8 features in update 6, got 3; the "
            "traceback is in vol:probe/runs/fc-driver/errors.log (checkpoint.volume)") in capfd.readouterr().err
    log = (volume.path / "probe" / "runs" / "fc-driver" / "errors.log").read_text()
    assert re.search(r'mlp/prep\.py", line 5, in prepare\n.*\n?.*\n?  File ".*mlp/model\.py", line 3', log), log


def test_with_two_processes_a_ranks_failure_names_the_users_frame(tmp_path: Path) -> None:
    from runjob import launch_local  # real processes: Accelerate's workers, two ranks

    run = launch_local(_user_package(tmp_path, retries={"max_retries": 0},
                                     train={"recipe": "mlp.broken:Broken"}), "--processes", "2")
    assert run.code == 1, run.output
    assert "attempts     1 (1: transient)" in run.output
    found = re.search(rf"  error        {re.escape(ERROR)}; the traceback is in (\S+errors\.log)\n", run.output)
    assert found, run.output
    _both_frames(Path(found[1]).read_text())  # the rank's own traceback
