"""Run `launch JOB --local` in a subprocess, as a user would, for the runtime tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from collections.abc import Iterable
from typing import Any, NamedTuple

import yaml

RECIPES = Path(__file__).resolve().parent / "recipes"


class Run(NamedTuple):
    code: int
    output: str
    volume: Path


def write_spec(folder: Path, body: dict[str, Any], name: str = "job.yaml") -> Path:
    """A spec file in `folder`, next to a copy of the probe recipe (a user's own module)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(RECIPES / "probe_recipe.py", folder / "probe_recipe.py")
    path = folder / name
    path.write_text(yaml.safe_dump({"version": 1, **body}, sort_keys=False))
    return path


def probe_spec(steps: int = 8, **sections: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "probe",
        "retries": {"max_retries": 2, "initial_delay": "0s"},
        # Saves in the loop: a kill at step N then loses exactly what a test expects. Tests of
        # background saves ask for them (checkpoint.async: true).
        "checkpoint": {"volume": "vol", "every_steps": 3, "keep_last": 3, "async": False},
        "train": {"recipe": "probe_recipe:Probe", "steps": steps, "log_every": 1, "tracker": "none"},
    }
    for key, value in sections.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    return spec


def launch_local(spec: Path, *args: str, env: dict[str, str] | None = None,
                 timeout: float = 240) -> Run:
    volumes = spec.parent / "volumes"
    full_env = {**os.environ, "PROBE_DIR": str(spec.parent), **(env or {})}
    full_env.pop("LAUNCH_FAULT", None) if env is None or "LAUNCH_FAULT" not in env else None
    proc = subprocess.run(
        [sys.executable, "-m", "launcher.cli", str(spec), "--local", "--volumes-dir", str(volumes), *args],
        cwd=spec.parent, env=full_env, capture_output=True, text=True, timeout=timeout)
    return Run(proc.returncode, proc.stdout + proc.stderr, volumes)


def launch_forked(spec: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                  volumes: Path | None = None) -> Run:
    """launch_local with the supervisor in this process and each worker forked from it, with
    torch imported already (tests/fault/forkrun.py): for the tests that are not about the real
    process, in a fraction of the time. Single-process runs only. `cwd` (default: the spec's
    folder) is where it runs, `volumes` (default: the spec's volumes/) its --volumes-dir."""
    fault_tools = str(Path(__file__).resolve().parent / "fault")
    if fault_tools not in sys.path:
        sys.path.insert(0, fault_tools)
    from forkrun import launch_forked as forked

    return forked(spec, *args, env=env, cwd=cwd, volumes=volumes)


def checkpoints(volume: Path) -> list[str]:
    return sorted(p.name for p in volume.iterdir() if p.name.startswith("step-")) if volume.is_dir() else []


def cli(capsys: Any, *args: str) -> tuple[int, str]:
    """`launch ARGS` in this process: its exit code and what it printed (pytest's capsys)."""
    from launcher.cli import main

    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


HEAVY = ("torch", "accelerate", "modal")


def fresh_cli(argv: list[str], cwd: Path, watch: Iterable[str] = HEAVY) -> tuple[int, set[str]]:
    """`launch ARGV` in a fresh interpreter: its exit code and which of the modules `watch`
    names it imported (what a command on the CLI's fast path must not load)."""
    code = (f"import json, sys; from launcher.cli import main; code = main({list(argv)!r}); "
            f"print(json.dumps([code, sorted(set({list(watch)!r}) & set(sys.modules))]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    exit_code, loaded = json.loads(done.stdout.splitlines()[-1])
    return exit_code, set(loaded)
