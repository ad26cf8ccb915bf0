"""`notify:` webhooks, against a real HTTP server on 127.0.0.1 (a thread): what is posted, when,
and that a failing or hanging webhook costs one warning line and never fails the run."""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fault"))

from forkrun import run_forked  # noqa: E402
from runjob import probe_spec, write_spec  # noqa: E402

from launcher.runtime import notify  # noqa: E402
from launcher.spec.model import JobSpec, Notify  # noqa: E402


class Hook:
    """A webhook receiver: what it was sent, and the status it answers with."""

    def __init__(self, status: int = 200) -> None:
        self.posts: list[dict[str, Any]] = []
        self.status = status
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802  http.server's name
                length = int(self.headers["Content-Length"])
                hook.posts.append({"path": self.path, "type": self.headers["Content-Type"],
                                   "body": json.loads(self.rfile.read(length))})
                self.send_response(hook.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-path"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    found = Hook()
    yield found
    found.close()


def spec_with(notify_section: dict[str, Any]) -> JobSpec:
    from launcher.spec.normalise import fields, resolve

    raw = resolve({"version": 1, "name": "probe", "checkpoint": {"volume": "vol"},
                   "train": {"recipe": "launcher.recipes.ppo:PPO"}, "notify": notify_section})
    return JobSpec.from_dict(fields(raw))


def test_a_finished_run_posts_slack_json_with_the_run_s_facts(hook: Hook) -> None:
    spec = spec_with({"url": hook.url})
    assert spec.notify == Notify(hook.url, None, ("finished", "failed", "retried", "stopped"))
    assert notify.send(spec, "finished", "20261208-010203-a1b2", cost_usd=0.4213,
                       objective={"name": "val/loss", "last": 0.123456, "best": 0.1})
    assert hook.posts == [{"path": "/hooks/secret-path", "type": "application/json", "body": {
        "text": "launch: run 20261208-010203-a1b2 of job probe finished; val/loss 0.1235; "
                "est. cost $0.42",
        "run": "20261208-010203-a1b2", "job": "probe", "status": "finished",
        "objective": {"name": "val/loss", "last": 0.123456, "best": 0.1}, "cost_usd": 0.4213}}]


def test_only_the_events_asked_for_are_posted_and_the_url_may_come_from_the_environment(
        hook: Hook, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    spec = spec_with({"url_env": "TEAM_WEBHOOK", "on": ["failed"]})
    assert not notify.send(spec, "finished", "r1")
    assert not notify.send(spec, "failed", "r1")  # the variable is not set here
    assert capsys.readouterr().err == "[launch] warning: notify: TEAM_WEBHOOK is not set; no notification sent\n"
    monkeypatch.setenv("TEAM_WEBHOOK", hook.url)
    assert notify.send(spec, "failed", "r1", detail="loss became nan")
    assert [p["body"]["text"] for p in hook.posts] == ["launch: run r1 of job probe failed; loss became nan"]


def test_a_failing_webhook_is_one_warning_that_never_shows_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    refusing = Hook(status=500)
    try:
        assert not notify.send(spec_with({"url": refusing.url}), "stopped", "r2")
    finally:
        refusing.close()
    assert len(refusing.posts) == 1
    err = capsys.readouterr().err
    assert err == "[launch] warning: notify: stopped of run r2 not delivered: the webhook answered HTTP 500\n"
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nobody listens there now
    assert not notify.send(spec_with({"url": f"http://127.0.0.1:{port}/x"}), "stopped", "r3")
    err = capsys.readouterr().err
    assert err.startswith("[launch] warning: notify: stopped of run r3 not delivered: the webhook could "
                          "not be reached (ConnectionRefusedError") and str(port) not in err


def test_a_hanging_webhook_costs_its_timeout_and_one_warning(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    listener = socket.socket()  # accepts (the kernel's backlog) and never answers
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    monkeypatch.setattr(notify, "TIMEOUT_S", 0.3)
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hang"
        assert not notify.send(spec_with({"url": url}), "finished", "r4")
    finally:
        listener.close()
    assert capsys.readouterr().err == ("[launch] warning: notify: finished of run r4 not delivered: "
                                       "the webhook could not be reached (TimeoutError: timed out)\n")


def test_the_plan_names_the_variable_never_the_url() -> None:
    from launcher.plan import _notify_lines

    assert _notify_lines(spec_with({"url_env": "TEAM_WEBHOOK", "on": ["failed", "stopped"]})) == [
        "notify      failed, stopped: a webhook at $TEAM_WEBHOOK"]
    assert _notify_lines(spec_with({"url": "https://hooks.example.com/T0/B0/x"})) == [
        "notify      finished, failed, retried, stopped: a webhook at the URL in the spec (not shown)"]


def test_a_local_run_reports_retried_then_finished_from_its_supervisor(hook: Hook, tmp_path: Path) -> None:
    spec = {**probe_spec(steps=4), "notify": {"url": hook.url}}
    run = run_forked(write_spec(tmp_path, spec), "kill:step:2")  # attempt 1 killed: retried
    assert run.code == 0, run.output
    statuses = [p["body"]["status"] for p in hook.posts]
    assert statuses == ["retried", "finished"], hook.posts
    runs = {p["body"]["run"] for p in hook.posts}
    assert len(runs) == 1 and re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", runs.pop())  # the run's id
    assert hook.posts[0]["body"]["text"].startswith("launch: run ")
    assert "train attempt 1 transient" in hook.posts[0]["body"]["text"]
    assert hook.url not in run.output


def test_a_failed_run_reports_failed_and_a_dead_webhook_does_not_fail_a_run(hook: Hook, tmp_path: Path) -> None:
    spec = {**probe_spec(steps=4, retries=0), "notify": {"url": hook.url, "on": ["failed"]}}
    spec["train"]["config"] = {"fail_at": 2}  # a diverged loss: permanent
    failed = run_forked(write_spec(tmp_path / "a", spec))
    assert failed.code == 1
    assert [p["body"]["status"] for p in hook.posts] == ["failed"]
    assert "diverged" in hook.posts[0]["body"]["text"]
    dead = {**probe_spec(steps=3), "notify": {"url": "http://127.0.0.1:9/none"}}
    fine = run_forked(write_spec(tmp_path / "b", dead))
    assert fine.code == 0, fine.output
    assert "warning: notify: finished of run" in fine.output


def test_on_is_a_key_as_written_though_yaml_1_1_reads_it_as_true(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from launcher.cli import main
    from launcher.load import load_spec

    spec = tmp_path / "job.yaml"
    spec.write_text("version: 1\nname: probe\ncheckpoint: {volume: vol}\nsecrets: [team-slack]\n"
                    "train: {recipe: launcher.recipes.ppo:PPO}\n"
                    "notify:\n  url_env: TEAM_WEBHOOK\n  on: [stopped]\n")
    assert load_spec(spec).spec.notify == Notify(None, "TEAM_WEBHOOK", ("stopped",))
    spec.write_text(spec.read_text().replace("  url_env: TEAM_WEBHOOK\n", "") + "  yes: 1\n")
    assert main(["check", str(spec)]) == 1
    assert capsys.readouterr().err.splitlines()[:2] == [
        f"{spec}:7:3: $.notify: give exactly one of url_env (an environment variable a secret sets: "
        "preferred) and url",
        f"{spec}:8:3: $.notify: unknown key 'yes'"]
