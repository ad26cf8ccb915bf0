"""Following a spawned call, and the local progress display: no server, no TTY needed."""

from __future__ import annotations

import io
import threading

import pytest

from launcher.backends import modal as backend
from launcher.backends.local import Display


class FakeCall:
    def __init__(self, result: object = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.cancelled = result, error, False
        self.release = threading.Event()

    def get(self) -> object:
        self.release.wait(30)
        if self.error:
            raise self.error
        return self.result

    def cancel(self) -> None:
        self.cancelled = True
        self.release.set()


class FakeLogs:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.terminated = False

    def terminate(self) -> None:
        self.terminated = True


@pytest.fixture
def fake_modal(monkeypatch: pytest.MonkeyPatch):
    """`install(call)` fakes Modal's call and the log follower; returns the followers started."""
    def install(call: FakeCall) -> list[FakeLogs]:
        started: list[FakeLogs] = []
        monkeypatch.setattr("modal.FunctionCall.from_id", lambda call_id: call)
        def popen(argv: list[str]) -> FakeLogs:
            started.append(FakeLogs(argv))
            return started[-1]

        monkeypatch.setattr(backend.subprocess, "Popen", popen)
        return started
    return install


SUB = backend.Submission("ppo-cartpole", "fc-1")


def test_follow_reports_the_result(fake_modal, capsys) -> None:
    call = FakeCall(result={"status": "finished", "steps": 80})
    call.release.set()
    logs = fake_modal(call)
    assert backend.follow(SUB) == 0
    assert capsys.readouterr().err == "job finished: {'status': 'finished', 'steps': 80}\n"
    assert [follower.terminated for follower in logs] == [True]


def test_follow_reports_a_failed_job(fake_modal, capsys) -> None:
    call = FakeCall(error=RuntimeError("loss became nan at step 5"))
    call.release.set()
    fake_modal(call)
    assert backend.follow(SUB) == 1
    assert capsys.readouterr().err == "job failed: RuntimeError: loss became nan at step 5\n"


@pytest.mark.parametrize("answer,cancelled", [(True, True), (False, False)])
def test_ctrl_c_asks_whether_to_stop_the_remote_job(fake_modal, monkeypatch, capsys,
                                                    answer: bool, cancelled: bool) -> None:
    call = FakeCall()
    fake_modal(call)
    asked = []
    monkeypatch.setattr(backend.click, "confirm", lambda text, **kw: asked.append(text) or answer)
    real_join = threading.Thread.join

    def interrupted_join(self: threading.Thread, timeout: float | None = None) -> None:
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C while we wait

    monkeypatch.setattr(threading.Thread, "join", interrupted_join)
    try:
        assert backend.follow(SUB) == 130
    finally:
        monkeypatch.setattr(threading.Thread, "join", real_join)
        call.release.set()
    assert asked == ["\nstop the remote job?"]
    assert call.cancelled is cancelled
    err = capsys.readouterr().err
    assert ("stopped fc-1" in err) is cancelled
    assert ("left running; follow it with:\n  launch logs fc-1 --follow" in err) is not cancelled


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_tty_a_progress_bar_shows_step_objective_and_sps() -> None:
    stream = Tty()
    display = Display(80, stream)
    display.metrics({"step": 20, "sps": 51234.0, "return_mean100": 312.5,
                     "objective": {"name": "return_mean100", "mode": "max", "value": 312.5}})
    display.bar.refresh()
    assert "20/80" in stream.getvalue()
    assert "return_mean100 312.5, 51,234 SPS" in stream.getvalue()
    display.close()


def test_a_progress_bar_shows_no_sps_for_a_recipe_without_environments() -> None:
    stream = Tty()
    display = Display(80, stream)
    display.metrics({"step": 20, "train/loss": 0.5,
                     "objective": {"name": "val/loss", "mode": "min", "value": 0.25}})
    display.bar.refresh()
    assert "val/loss 0.25" in stream.getvalue()
    assert "SPS" not in stream.getvalue()
    display.close()


def test_without_a_tty_there_is_no_bar() -> None:
    display = Display(80, io.StringIO())
    assert display.bar is None
    display.metrics({"step": 20, "sps": 1.0})  # plain log lines from the worker say it instead


class Gone(io.StringIO):
    """A terminal that went away (SIGHUP): every write fails."""

    def write(self, text: str) -> int:
        raise OSError(5, "Input/output error")


def test_a_terminal_that_went_away_does_not_stop_the_run(monkeypatch) -> None:
    monkeypatch.setattr("sys.stderr", Gone())
    display = Display(80, io.StringIO())
    display.line("[launch] attempt 1: preempted")  # the supervisor goes on to its summary
    display.close()


def test_a_permanent_failure_is_reported_and_exits_1(fake_modal, capsys) -> None:
    call = FakeCall(result={"status": "permanent", "error": "loss became nan at step 5"})
    call.release.set()
    fake_modal(call)
    assert backend.follow(SUB) == 1
    assert capsys.readouterr().err == "job failed, not retried: loss became nan at step 5\n"


def test_follow_reports_a_pipeline_stage_by_stage_and_the_stage_that_failed(fake_modal, capsys) -> None:
    call = FakeCall(result={"status": "failed", "failed_stage": "train", "stages": [
        {"stage": "prepare", "status": "skipped", "metrics": {"rows": 3}},
        {"stage": "train", "status": "failed", "metrics": {},
         "error": "FunctionTimeoutError: Function timed out"}]})
    call.release.set()
    fake_modal(call)
    assert backend.follow(SUB) == 1
    assert capsys.readouterr().err == (
        "job failed in stage train\n"
        "  prepare    skipped; rows 3\n"
        "  train      failed (FunctionTimeoutError: Function timed out); no metrics\n")


def test_follow_reports_a_finished_pipeline(fake_modal, capsys) -> None:
    call = FakeCall(result={"status": "finished", "failed_stage": None, "stages": [
        {"stage": "train", "status": "finished", "metrics": {"loss": 0.125}},
        {"stage": "evaluate", "status": "finished", "metrics": {"test_accuracy": 0.9875}}]})
    call.release.set()
    fake_modal(call)
    assert backend.follow(SUB) == 0
    assert capsys.readouterr().err == ("job finished\n  train      finished; loss 0.125\n"
                                       "  evaluate   finished; test_accuracy 0.9875\n")


def test_a_stopped_job_and_a_stopped_pipeline_exit_143(fake_modal, capsys) -> None:
    call = FakeCall(result={"status": "stopped", "steps": 40, "metrics": {}})
    call.release.set()
    fake_modal(call)
    assert backend.follow(SUB) == 143
    assert capsys.readouterr().err == "job stopped (launch stop) after update 40; checkpoint committed\n"
    call = FakeCall(result={"status": "stopped", "failed_stage": None, "stopped_stage": "train", "stages": [
        {"stage": "train", "status": "stopped", "metrics": {"loss": 0.5}}]})
    call.release.set()
    fake_modal(call)
    assert backend.follow(SUB) == 143
    assert capsys.readouterr().err == "job stopped in stage train\n  train      stopped; loss 0.5\n"


def test_follow_exits_3_for_a_bug_in_a_pipeline_stage_or_its_driver(fake_modal, capsys) -> None:
    stage_bug = FakeCall(result={"status": "failed", "failed_stage": "train", "stages": [
        {"stage": "train", "status": "permanent", "bug": True, "metrics": {},
         "error": "a bug in launcher: TypeError: x"}]})
    stage_bug.release.set()
    fake_modal(stage_bug)
    assert backend.follow(SUB) == 3
    driver_bug = FakeCall(result={"status": "permanent", "bug": True, "failed_stage": None,
                                  "stages": [], "error": "a bug in launcher: TypeError: y"})
    driver_bug.release.set()
    fake_modal(driver_bug)
    assert backend.follow(SUB) == 3
    assert "job failed, not retried: a bug in launcher: TypeError: y" in capsys.readouterr().err
