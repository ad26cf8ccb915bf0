"""A local run's start and end: the worker started before the spec is validated (and stopped
when it is refused), its phases marked for bench/startup.py, the garbage collector paused for
start-up, and an exit that runs every exit handler but skips the interpreter's teardown."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from runjob import launch_local, probe_spec, write_spec

from launcher.backends.local import Options, Supervisor
from launcher.load import load_spec
from launcher.runtime.train.session import Session


def _alive_with(token: str) -> list[int]:
    """Processes whose environment holds `token` (Linux: /proc/PID/environ)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and token.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _phases(timeline: Path) -> list[str]:
    return [json.loads(line)["phase"] for line in timeline.read_text().splitlines()]


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_a_refused_spec_stops_the_worker_started_before_validation(tmp_path: Path) -> None:
    token = f"launch-test-{os.getpid()}-{id(tmp_path)}"
    spec = write_spec(tmp_path, probe_spec(compute={"gpu_count": 12, "gpu": "H100"}))
    run = launch_local(spec, env={"LAUNCH_TIMELINE": str(tmp_path / "t.jsonl"), "TEST_TOKEN": token})
    assert run.code == 1
    line = next(n for n, text in enumerate(spec.read_text().splitlines(), 1) if "gpu_count" in text)
    assert run.output == f"{spec}:{line}:14: $.compute.gpu_count: 12 is greater than the maximum of 8\n"
    assert "spawn" in _phases(tmp_path / "t.jsonl")  # it had been started
    assert [pid for pid in _alive_with(token) if pid != os.getpid()] == []


@pytest.mark.parametrize("snapshot,restored", [
    ("none", ([], [])), ("cpu", (["zygote", "snapshot_start"], ["snapshot", "restore"]))])
def test_every_phase_of_a_run_is_marked_in_order(tmp_path: Path, snapshot: str,
                                                 restored: tuple[list[str], ...]) -> None:
    timeline = tmp_path / "t.jsonl"
    run = launch_local(write_spec(tmp_path, probe_spec(steps=2, snapshot=snapshot)),
                       env={"LAUNCH_TIMELINE": str(timeline)})
    assert run.code == 0, run.output
    phases = _phases(timeline)
    # The attempt is due (the supervisor's mark) while the worker may still be importing.
    assert phases.index("due") < phases.index("go")
    phases.remove("due")
    # The snapshot's and the zygote's memory are measured while the attempt runs, in no fixed
    # order with the attempt's own marks (other processes), but before it is over.
    measured = sorted(p for p in phases if p.endswith("_memory"))
    assert measured == (["snapshot_memory", "zygote_memory"] if snapshot == "cpu" else [])
    assert all(phases.index(p) < phases.index("worker_exited") for p in measured)
    phases = [p for p in phases if p not in measured]
    assert phases == [
        "command", "spawn", "worker", "preloaded", "go", "app", *restored[0], "stage1", *restored[1], "stage2", "first_step",
        "first_step_done", "last_step_done", "committed", "result", "worker_exit", "worker_exited"]


# Imported by the supervisor too (to validate train.config): files are named by process.
EXIT_RECIPE = """
import atexit
import os
from pathlib import Path

from probe_recipe import Probe

HERE = Path(__file__).parent


class Finalized:
    def __init__(self):
        # Kept on the instance: the teardown may already have cleared this module's globals.
        self.note, self.path = Path.write_text, HERE / f"finalized-{os.getpid()}"

    def __del__(self):
        self.note(self.path, "the interpreter tore this module down")


KEEP = Finalized()
atexit.register(lambda: (HERE / f"atexit-{os.getpid()}").write_text("exit handlers ran"))
"""


def test_the_worker_runs_exit_handlers_and_skips_the_teardown(tmp_path: Path) -> None:
    (tmp_path / "exit_recipe.py").write_text(EXIT_RECIPE)
    spec = probe_spec(steps=2, train={"recipe": "exit_recipe:Probe"})
    timeline = tmp_path / "t.jsonl"
    run = launch_local(write_spec(tmp_path, spec), env={"LAUNCH_TIMELINE": str(timeline)})
    assert run.code == 0, run.output
    assert "summary: probe finished" in run.output
    marks = [json.loads(line) for line in timeline.read_text().splitlines()]
    # The process that ran the attempt (restored from the snapshot: a fork of the worker's).
    worker = next(m["pid"] for m in marks if m["phase"] == "worker_exit")
    assert (tmp_path / f"atexit-{worker}").is_file()
    assert not (tmp_path / f"finalized-{worker}").exists()


GC_RECIPE = """
import gc

from probe_recipe import Probe as Base

SEEN = []


class Probe(Base):
    def __init__(self, config, seed):
        SEEN.append(gc.isenabled())
        super().__init__(config, seed)
"""


def test_stage_1_runs_without_the_collector_and_freezes_what_it_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "gc_recipe.py").write_text(GC_RECIPE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = load_spec(write_spec(tmp_path, probe_spec(train={"recipe": "gc_recipe:Probe"}))).spec
    frozen = gc.get_freeze_count()
    try:
        Session(spec.to_dict()).stage1()
        assert sys.modules["gc_recipe"].SEEN == [False]
        assert gc.isenabled()
        assert gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()
        gc.enable()


class EarlyWorker:
    def __init__(self, spec_env: dict[str, str]) -> None:
        self.spec_env = spec_env
        self.killed = False

    def kill(self) -> None:
        self.killed = True


def test_an_early_worker_started_with_another_environment_is_not_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = load_spec(write_spec(tmp_path, probe_spec(env={"A": "1"}))).spec
    stale, good = EarlyWorker({"A": "2"}), EarlyWorker({"A": "1"})
    args: tuple[Any, ...] = (spec, tmp_path / "app.py", tmp_path, tmp_path, Options())
    assert Supervisor(*args, early=stale).early is None and stale.killed
    assert Supervisor(*args, early=good).early is good and not good.killed


def test_the_supervisor_of_a_local_run_never_imports_torch(tmp_path: Path) -> None:
    # The spec's recipe ships its config schema beside it, so nothing in the supervisor needs
    # torch: the worker alone imports it (and starts doing so before validation).
    code = ("import sys\n"
            "from launcher.commands import local_run\n"
            "local_run.run_local = lambda *args, **kwargs: 0\n"
            "from launcher.backends import pipeline\n"  # the job has stages: this one runs them
            "pipeline.run_pipeline_local = lambda *args, **kwargs: 0\n"
            "from launcher.cli import main\n"
            "assert main(['jobs/ppo.yaml', '--local']) == 0\n"
            "print(sorted(m for m in ('torch', 'accelerate', 'modal') if m in sys.modules))\n")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         timeout=120)
    assert (out.returncode, out.stdout) == (0, "[]\n"), out.stderr
