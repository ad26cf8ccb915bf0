"""The pipeline driver and `launch stop` / `notify:`: a stop request ends the pipeline as
stopped (no later stage starts), and on Modal the driver, the run's coordinator, calls the
webhook at the end with the estimated cost."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from test_driver import SPEC, Caller, Volume, lease_of, run
from test_notify import Hook

from launcher.runtime.control.stop import StopRequest
from launcher.runtime.pipeline import driver
from launcher.spec.model import Notify


class Requests(dict):
    """A modal.Dict as the driver sees it: `get`."""


def test_a_stopped_train_ends_the_pipeline_as_stopped_and_evaluate_never_starts(tmp_path: Path) -> None:
    caller = Caller({"train": {"status": "stopped", "steps": 7, "metrics": {}}})
    out = run(tmp_path, caller, stops=Requests())
    assert caller.stages == ["prepare", "train"]
    assert (out["status"], out["failed_stage"]) == ("stopped", None)
    assert [(s["stage"], s["status"]) for s in out["stages"]] == [("prepare", "finished"), ("train", "stopped")]
    assert lease_of(tmp_path) is None  # released: the next launch is not blocked


def test_a_request_between_stages_starts_no_further_stage(tmp_path: Path) -> None:
    requests = Requests()

    def during(stage: str) -> None:
        if stage == "prepare":  # `launch stop` while prepare runs (it has no loop to stop)
            requests["fc-driver"] = StopRequest.make("fc-driver", now=False).to_dict()

    caller = Caller(during=during)
    out = run(tmp_path, caller, stops=requests)
    assert caller.stages == ["prepare"]
    assert out["status"] == "stopped"
    assert out["stages"][-1] == {"stage": "train", "status": "stopped",
                                 "error": "stopped before it started (launch stop)"}


def test_on_modal_the_driver_reports_the_pipeline_s_end(tmp_path: Path) -> None:
    hook = Hook()
    try:
        spec = dataclasses.replace(SPEC, notify=Notify(hook.url, None, ("finished", "failed")))
        train = {"status": "finished", "steps": 5, "metrics": {"loss": 0.5},
                 "objective": {"name": "loss", "last": 0.5, "best": 0.4}}
        out = driver.run_pipeline(spec, Caller({"train": train}), Volume(), "fc-driver", root=tmp_path)
        failed = driver.run_pipeline(spec, Caller({"evaluate": {"status": "permanent", "error": "bad"}}),
                                     Volume(), "fc-driver-2", root=tmp_path)
    finally:
        hook.close()
    assert (out["status"], failed["status"]) == ("finished", "failed")
    first, second = (p["body"] for p in hook.posts)
    assert (first["run"], first["status"], first["objective"]) == ("fc-driver", "finished", train["objective"])
    assert isinstance(first["cost_usd"], float)  # the stages' wall time at the plan's prices
    assert (second["status"], second["text"].endswith("in stage evaluate: bad")) == ("failed", True)


