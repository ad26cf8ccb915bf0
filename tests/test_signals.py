"""Signals to `launch --local`, as a terminal, a process manager or `kill -9` sends them.

- SIGKILL of `launch`: the worker, and the per-process workers Accelerate forked, die with it
  (the parent-death signal; the stdin pipe watch on its own too) and publish nothing more.
- SIGTERM and SIGHUP: a preemption. The worker writes its final checkpoint, the summary
  prints, and `launch` exits 143 / 129.

Synchronisation is by polling for what the run writes (its update log, its pids) with a
deadline, never by sleeping a guessed time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from runjob import checkpoints, launch_local, probe_spec, write_spec

DEADLINE_S = 180


def wait_for(what: str, condition: Callable[[], object], deadline_s: float = DEADLINE_S) -> object:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if value := condition():
            return value
        time.sleep(0.05)  # a polling interval, not a synchronisation
    raise AssertionError(f"timed out waiting for {what}")


def start_launch(folder: Path, spec: dict, *args: str, volumes: Path | None = None) -> subprocess.Popen[str]:
    """`launch SPEC --local` in the background; its output goes to folder/launch.log."""
    env = {**os.environ, "PROBE_DIR": str(folder)}
    env.pop("LAUNCH_FAULT", None)
    log = open(folder / "launch.log", "w")
    return subprocess.Popen([sys.executable, "-m", "launcher.cli", str(write_spec(folder, spec)), "--local",
                             "--volumes-dir", str(volumes or folder / "volumes"), *args],
                            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def rows(folder: Path, rank: int = 0) -> list[dict]:
    path = folder / f"probe-rank{rank}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody has reaped yet (it can no longer write)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
@pytest.mark.parametrize("snapshot", ["none", "cpu"])
def test_a_killed_launch_takes_its_workers_with_it(tmp_path: Path, snapshot: str) -> None:
    spec = probe_spec(steps=400, train={"config": {"delay_s": 0.05}}, snapshot=snapshot)
    launch = start_launch(tmp_path, spec, "--processes", "2")
    ranks = wait_for("both ranks to train", lambda: [rows(tmp_path, r)[0]["pid"] for r in (0, 1)
                                                      if len(rows(tmp_path, r)) >= 4] or None)
    assert len(ranks) == 2
    worker = parent_of(ranks[0])
    assert parent_of(ranks[1]) == worker
    # With a snapshot, the attempt is a fork of its class's snapshot, a fork of the worker.
    between = [parent_of(worker), parent_of(parent_of(worker))] if snapshot == "cpu" else []
    assert parent_of(between[-1] if between else worker) == launch.pid
    launch.kill()
    launch.wait()
    wait_for("the worker and its ranks to die",
             lambda: not any(alive(p) for p in (*between, worker, *ranks)), deadline_s=30)
    published = checkpoints(tmp_path / "volumes" / "vol" / "probe")
    assert len(rows(tmp_path)) < 400  # it was stopped, not finished
    # Nothing is left that could publish more; the next run finds the job free and resumes.
    write_spec(tmp_path, probe_spec(steps=1))
    again = launch_local(tmp_path / "job.yaml", "--processes", "2")
    assert again.code == 0, again.output
    assert "was left behind by a run that is gone; taken over" in again.output
    newest = published[-1] if published else None
    assert (f"resumed from {newest}" if newest else "no checkpoint: starting fresh") in again.output


LIFELINE_CHILD = """
import os, sys, time
from launcher.runtime.lifecycle import lifeline
pipe = os.environ.get("LAUNCH_LIFELINE_FD")
lifeline.arm(int(sys.argv[1]), int(pipe) if pipe else None)
print("armed", flush=True)
time.sleep(600)
"""


def test_a_worker_dies_when_the_supervisor_s_pipe_closes(tmp_path: Path) -> None:
    """The portable line on its own: this process stays alive, only the pipe closes."""
    read, write = os.pipe()
    child = subprocess.Popen([sys.executable, "-c", LIFELINE_CHILD, str(os.getpid())],
                             env={**os.environ, "LAUNCH_LIFELINE_FD": str(read)}, pass_fds=(read,),
                             stdout=subprocess.PIPE, text=True)
    os.close(read)
    assert child.stdout.readline() == "armed\n"
    os.close(write)
    assert child.wait(timeout=30) == -signal.SIGKILL


INTERMEDIATE = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], "0"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, text=True, start_new_session=True)
print(child.pid, child.stdout.readline().strip(), flush=True)
child.wait()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_dies_with_its_parent_without_any_pipe(tmp_path: Path) -> None:
    """The parent-death signal on its own: no pipe is watched."""
    script = LIFELINE_CHILD.replace("int(sys.argv[1])", "os.getppid()")
    parent = subprocess.Popen([sys.executable, "-c", INTERMEDIATE, script], stdout=subprocess.PIPE,
                              text=True)
    pid, state = parent.stdout.readline().split()
    assert state == "armed"
    parent.kill()
    parent.wait()
    wait_for("the orphan to die", lambda: not alive(int(pid)), deadline_s=30)


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_are_a_preemption(tmp_path: Path, sig: signal.Signals, code: int) -> None:
    launch = start_launch(tmp_path, probe_spec(steps=400, train={"config": {"delay_s": 0.05}}))
    wait_for("a few updates", lambda: len(rows(tmp_path)) >= 5)
    launch.send_signal(sig)
    assert launch.wait(timeout=120) == code
    output = (tmp_path / "launch.log").read_text()
    stopped = int(output.split("stopped on SIGINT after update ")[1].split()[0])
    assert f"stopped on SIGINT after update {stopped} of 400; checkpoint committed" in output
    assert f"summary: probe stopped ({sig.name})" in output
    assert "attempts     1 (1: preempted)" in output
    assert checkpoints(tmp_path / "volumes" / "vol" / "probe")[-1] == f"step-{stopped:08d}"
    assert "Traceback" not in output


def test_stop_signals_route_while_inside_and_restore_on_the_way_out() -> None:
    """The one stop wiring every local coordinator uses (single job, pipeline, sweep): Ctrl-C,
    SIGTERM and SIGHUP to the handler, SIGUSR1 to the request, or left alone without one."""
    from launcher.backends.local import stop_signals

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)}
    got: list[object] = []
    with stop_signals(got.append, lambda: got.append("request")):
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGUSR1)
    assert got == [signal.SIGTERM, "request"]
    assert {s: signal.getsignal(s) for s in before} == before
    with stop_signals(got.append):  # a sweep's coordinator: no `launch stop` request handler
        assert signal.getsignal(signal.SIGUSR1) == before[signal.SIGUSR1]
        signal.raise_signal(signal.SIGHUP)
    assert got[-1] == signal.SIGHUP
    assert {s: signal.getsignal(s) for s in before} == before
