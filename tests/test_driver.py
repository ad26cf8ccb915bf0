"""The pipeline's driver on its own: order, the skip of an unchanged prepare, train's result, a
failing stage, the job's lease held under the driver's call id, and a restarted driver that
waits for the stage call it made; stage calls recorded instead of run (as Modal's would be)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from launcher.runtime import faults
from launcher.runtime.failures import VolumeError
from launcher.runtime.pipeline import driver, stages
from launcher.spec import yamlpos
from launcher.spec.validate import validate

SPEC = validate(yamlpos.parse(
    "version: 1\nname: job\ntrain: {recipe: launcher.recipes.digits:Digits, steps: 5}\n"
    "stages:\n  prepare: {run: launcher.recipes.digits:prepare}\n"
    "  evaluate: {run: launcher.recipes.digits:evaluate}\n", "t.yaml"))


class Volume:
    def __init__(self) -> None:
        self.commits = self.reloads = 0

    def commit(self) -> None:
        self.commits += 1

    def reload(self) -> None:
        self.reloads += 1


class Caller:
    """A StageCaller that records each call; `results` maps a stage to its result, or to an
    exception its `get` raises (KeyboardInterrupt: the driver's container is preempted)."""

    def __init__(self, results: dict[str, Any] | None = None, during: Any = None) -> None:
        self.results = results or {}
        self.spawned: list[tuple[str, str]] = []  # (stage, lease)
        self.waited: list[str] = []  # call ids
        self.during = during  # called with the stage's name while it "runs"

    def spawn(self, stage: str, lease: str) -> str:
        self.spawned.append((stage, lease))
        return f"fc-{stage}-{len(self.spawned)}"

    def get(self, call_id: str) -> dict[str, Any]:
        self.waited.append(call_id)
        stage = call_id.split("-")[1]
        if self.during is not None:
            self.during(stage)
        found = self.results.get(stage, {"status": "finished", "metrics": {}})
        if isinstance(found, BaseException):
            raise found
        return found

    @property
    def stages(self) -> list[str]:
        return [stage for stage, _ in self.spawned]


def run(tmp_path: Path, caller: Caller, call: str = "fc-driver", volume: Volume | None = None,
        rerun: tuple[str, ...] = (), **kwargs: Any) -> dict[str, Any]:
    return driver.Driver(SPEC, caller, volume or Volume(), call, root=tmp_path, **kwargs).run(rerun).to_json()


def lease_of(tmp_path: Path) -> dict[str, Any] | None:
    path = tmp_path / "job" / "lease.json"
    return json.loads(path.read_text()) if path.is_file() else None


def test_the_stages_run_in_order_and_trains_result_is_committed(tmp_path: Path) -> None:
    train = {"status": "finished", "steps": 5, "metrics": {"loss": 0.5, "note": "text"}}
    caller, volume = Caller({"train": train}), Volume()
    out = run(tmp_path, caller, volume=volume)
    assert caller.stages == ["prepare", "train", "evaluate"]
    assert (out["status"], out["failed_stage"]) == ("finished", None)
    saved = stages.read_result(stages.StageFolders(tmp_path, "job"), "train")
    assert saved is not None and saved["metrics"] == {"loss": 0.5}  # numbers only
    assert saved["digest"] == stages.digest(stages.inputs(SPEC, "train", None))
    # the lease taken and released, a record before and after each stage, train's result
    assert (volume.reloads, volume.commits) == (5, 1 + 2 * 3 + 1 + 1)


def test_an_unchanged_prepare_is_skipped_unless_rerun_names_it(tmp_path: Path) -> None:
    folders = stages.StageFolders(tmp_path, "job")
    digest = stages.digest(stages.inputs(SPEC, "prepare", "c" * 40))
    stages.write_result(folders, "prepare", {"digest": digest, "metrics": {"rows": 3}})
    caller = Caller()
    out = run(tmp_path, caller, commit="c" * 40)
    assert caller.stages == ["train", "evaluate"]
    assert out["stages"][0] == {"stage": "prepare", "status": "skipped", "metrics": {"rows": 3},
                                "digest": digest, "seconds": 0.0}
    run(tmp_path, caller, call="fc-2", commit="d" * 40)  # another commit: other code
    run(tmp_path, caller, call="fc-3", rerun=("prepare",), commit="c" * 40)
    assert caller.stages == ["train", "evaluate"] + ["prepare", "train", "evaluate"] * 2


def test_a_stage_that_raises_stops_the_pipeline_with_the_stage_named(tmp_path: Path) -> None:
    failed = {"status": "failed", "error": "RuntimeError: retries spent"}  # as ModalCaller.get says it
    caller = Caller({"train": failed})
    out = run(tmp_path, caller)
    assert caller.stages == ["prepare", "train"]  # evaluate never runs
    assert (out["status"], out["failed_stage"]) == ("failed", "train")
    assert out["stages"][-1]["error"] == "RuntimeError: retries spent"
    assert stages.read_result(stages.StageFolders(tmp_path, "job"), "train") is None


def test_a_permanent_result_stops_the_pipeline(tmp_path: Path) -> None:
    caller = Caller({"prepare": {"status": "permanent", "error": "stages.prepare: bad"}})
    out = run(tmp_path, caller)
    assert caller.stages == ["prepare"]
    assert (out["status"], out["failed_stage"], out["stages"][0]["error"]) == \
        ("failed", "prepare", "stages.prepare: bad")


def test_the_modal_caller_turns_a_raising_call_into_a_failed_stage() -> None:
    class Call:
        object_id = "fc-7"

        def get(self) -> dict:
            raise RuntimeError("retries spent")

    class Method:
        def spawn(self, **kwargs: Any) -> Call:
            assert kwargs == {"lease": "fc-driver"}
            return Call()

    caller = driver.ModalCaller({"train": Method()}, lambda call_id: Call())
    assert caller.spawn("train", "fc-driver") == "fc-7"
    assert caller.get("fc-7") == {"status": "failed", "error": "RuntimeError: retries spent"}


# -- the driver owns the run: the job's lease, under its call id, for the whole pipeline ---------

def test_the_driver_holds_the_lease_under_its_call_id_and_its_stages_work_under_it(tmp_path: Path) -> None:
    held: list[str | None] = []
    caller = Caller(during=lambda stage: held.append((lease_of(tmp_path) or {}).get("call_id")))
    assert run(tmp_path, caller)["status"] == "finished"
    assert held == ["fc-driver"] * 3  # prepare, train and evaluate, each under the driver's lease
    assert caller.spawned == [("prepare", "fc-driver"), ("train", "fc-driver"), ("evaluate", "fc-driver")]
    assert lease_of(tmp_path) is None  # released at the end


@pytest.mark.parametrize("stage", ["prepare", "train", "evaluate"])
def test_a_second_launch_is_refused_in_any_stage_of_the_first(tmp_path: Path, stage: str) -> None:
    second: dict[str, Any] = {}
    other = Caller()

    def launch_again(running: str) -> None:
        if running == stage:
            second.update(run(tmp_path, other, call="fc-second"))

    assert run(tmp_path, Caller(during=launch_again))["status"] == "finished"
    assert second["status"] == "permanent" and second["stages"] == []
    assert second["error"].startswith("job: already running on volume launcher-checkpoints: call fc-driver (pid ")
    assert other.spawned == []  # it started nothing


# -- Modal restarts a preempted driver on the same input, with the same call id --------------------

def test_a_restarted_driver_waits_for_the_stage_call_it_made_and_makes_no_other(tmp_path: Path) -> None:
    first = Caller({"train": KeyboardInterrupt()})  # preempted while it waits for train
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, first)
    assert first.spawned == [("prepare", "fc-driver"), ("train", "fc-driver")]
    assert lease_of(tmp_path)["call_id"] == "fc-driver"  # kept: train still works under it

    restarted = Caller({"train": {"status": "finished", "steps": 5, "metrics": {}}})
    out = run(tmp_path, restarted)  # the same call id: Modal's restart of the same input
    assert restarted.spawned == [("evaluate", "fc-driver")]  # no second train, no second prepare
    assert restarted.waited == ["fc-train-2", "fc-evaluate-1"]  # the first's train call, waited for
    assert [r["status"] for r in out["stages"]] == ["finished"] * 3
    assert lease_of(tmp_path) is None


def test_a_new_launch_does_not_take_an_earlier_drivers_calls_for_its_own(tmp_path: Path) -> None:
    assert run(tmp_path, Caller(), call="fc-old")["status"] == "finished"
    caller = Caller()
    assert run(tmp_path, caller, call="fc-new")["status"] == "finished"
    assert caller.stages == ["prepare", "train", "evaluate"]


def test_the_driver_and_the_stage_results_need_neither_torch_nor_the_cli() -> None:
    # The driver runs in a small CPU container, and the supervisor reads results without torch.
    import subprocess
    import sys
    code = ("import sys, launcher.runtime.pipeline.driver, launcher.runtime.pipeline.stages\n"
            "bad = {'torch', 'accelerate', 'sklearn', 'click', 'jinja2', 'jsonschema'} & set(sys.modules)\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


# -- a bug in the driver's own code is launcher's, not the user's transient failure ------------

@pytest.fixture
def bug_in_the_driver():
    """A TypeError raised from launcher's own code while the driver waits for prepare."""
    faults.arm("bug:prepare-run:1")
    yield lambda stage: faults.point(f"{stage}-run")
    faults.arm(None)


def test_a_bug_in_the_driver_is_a_bug_result_not_retried_with_its_traceback_kept(
        tmp_path: Path, bug_in_the_driver: Any) -> None:
    caller, volume = Caller(during=bug_in_the_driver), Volume()
    out = driver.run_pipeline(SPEC, caller, volume, "fc-driver", root=tmp_path)
    assert caller.stages == ["prepare"]  # nothing after it
    assert (out["status"], out["bug"], out["stages"], out["failed_stage"]) == ("permanent", True, [], None)
    assert out["error"].startswith("internal error (a bug in launcher): ")
    assert "TypeError: an injected bug in launcher at prepare-run" in out["error"]
    assert out["error"].endswith("; the traceback is in job/errors.log (checkpoint.volume)")
    kept = (tmp_path / "job" / "errors.log").read_text()
    assert 'launcher/runtime/faults.py", line' in kept and volume.commits >= 2


def test_the_volumes_failure_in_the_driver_is_raised_for_modal_to_restart(tmp_path: Path) -> None:
    caller = Caller({"prepare": VolumeError("checkpoint.volume v: reload failed")})
    with pytest.raises(VolumeError):
        driver.run_pipeline(SPEC, caller, Volume(), "fc-driver", root=tmp_path)
