"""The pipeline's driver on its own: order, the skip of an unchanged prepare, train's result,
and a failing stage, with stage calls recorded instead of run (as Modal's .remote() would be)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from launcher.runtime import driver, stages
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


def calls_into(log: list[str], results: dict[str, Any]) -> dict[str, Any]:
    def call(name: str) -> Any:
        def run() -> dict[str, Any]:
            log.append(name)
            if isinstance(results.get(name), Exception):
                raise results[name]
            return results.get(name, {"status": "finished", "metrics": {}})
        return run
    return {name: call(name) for name in SPEC.pipeline}


def test_the_stages_run_in_order_and_trains_result_is_committed(tmp_path: Path) -> None:
    log: list[str] = []
    folders, volume = stages.StageFolders(tmp_path, "job"), Volume()
    train = {"status": "finished", "steps": 5, "metrics": {"loss": 0.5, "note": "text"}}
    out = driver.run_pipeline(SPEC, driver.remote_runner(calls_into(log, {"train": train})),
                              folders, volume)
    assert log == ["prepare", "train", "evaluate"]
    assert (out["status"], out["failed_stage"]) == ("finished", None)
    saved = stages.read_result(folders, "train")
    assert saved is not None and saved["metrics"] == {"loss": 0.5}  # numbers only
    assert saved["digest"] == stages.digest(stages.inputs(SPEC, "train", None))
    assert (volume.reloads, volume.commits) == (1, 1)


def test_an_unchanged_prepare_is_skipped_unless_rerun_names_it(tmp_path: Path) -> None:
    folders = stages.StageFolders(tmp_path, "job")
    digest = stages.digest(stages.inputs(SPEC, "prepare", "c" * 40))
    stages.write_result(folders, "prepare", {"digest": digest, "metrics": {"rows": 3}})
    log: list[str] = []
    out = driver.run_pipeline(SPEC, driver.remote_runner(calls_into(log, {})), folders, Volume(),
                              commit="c" * 40)
    assert log == ["train", "evaluate"]
    assert out["stages"][0] == {"stage": "prepare", "status": "skipped", "metrics": {"rows": 3},
                                "digest": digest, "seconds": 0.0}
    driver.run_pipeline(SPEC, driver.remote_runner(calls_into(log, {})), folders, Volume(),
                        commit="d" * 40)  # another commit: other code
    driver.run_pipeline(SPEC, driver.remote_runner(calls_into(log, {})), folders, Volume(),
                        rerun=("prepare",), commit="c" * 40)
    assert log == ["train", "evaluate"] + ["prepare", "train", "evaluate"] * 2


def test_a_stage_that_raises_stops_the_pipeline_with_the_stage_named(tmp_path: Path) -> None:
    log: list[str] = []
    results = {"train": RuntimeError("retries spent")}
    out = driver.run_pipeline(SPEC, driver.remote_runner(calls_into(log, results)),
                              stages.StageFolders(tmp_path, "job"), Volume())
    assert log == ["prepare", "train"]  # evaluate never runs
    assert (out["status"], out["failed_stage"]) == ("failed", "train")
    assert out["stages"][-1]["error"] == "RuntimeError: retries spent"
    assert stages.read_result(stages.StageFolders(tmp_path, "job"), "train") is None


def test_a_permanent_result_stops_the_pipeline(tmp_path: Path) -> None:
    log: list[str] = []
    results = {"prepare": {"status": "permanent", "error": "stages.prepare: bad"}}
    out = driver.run_pipeline(SPEC, driver.remote_runner(calls_into(log, results)),
                              stages.StageFolders(tmp_path, "job"), Volume())
    assert log == ["prepare"]
    assert (out["status"], out["failed_stage"], out["stages"][0]["error"]) == \
        ("failed", "prepare", "stages.prepare: bad")


def test_the_driver_and_the_stage_results_need_neither_torch_nor_the_cli() -> None:
    # The driver runs in a small CPU container, and the supervisor reads results without torch.
    import subprocess
    import sys
    code = ("import sys, launcher.runtime.driver, launcher.runtime.stages\n"
            "bad = {'torch', 'accelerate', 'sklearn', 'click', 'jinja2', 'jsonschema'} & set(sys.modules)\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
