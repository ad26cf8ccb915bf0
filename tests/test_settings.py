"""The runtime's settings: every LAUNCH_* variable is parsed in one place and written by it."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from launcher.runtime.settings import ENV, PREFIX, RuntimeSettings

ROOT = Path(__file__).resolve().parents[1]

# Modules that may spell a LAUNCH_* name, and why.
ALLOWED = {
    "launcher/runtime/settings.py": "the settings themselves",
    # The CLI side's own state folder, read by `launch` before any run exists; never a
    # worker's setting (the supervisor does not pass it on).
    "launcher/backends/local.py": "LAUNCH_LOCAL_DIR",
}


def launch_names(path: Path) -> list[tuple[int, str]]:
    """String constants that name a LAUNCH_* variable, docstrings left out."""
    tree = ast.parse(path.read_text("utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and PREFIX in node.value and id(node) not in docstrings]


def test_only_the_settings_module_names_launch_variables() -> None:
    found = {}
    for path in sorted((ROOT / "launcher").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        names = launch_names(path)
        if names and rel not in ALLOWED:
            found[rel] = names
    assert found == {}, "read LAUNCH_* through launcher.runtime.settings"
    local = [name for _, name in launch_names(ROOT / "launcher/backends/local.py")]
    assert local == ["LAUNCH_LOCAL_DIR"]


def test_the_check_sees_a_read_in_code_but_not_in_a_docstring(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('"""Reads LAUNCH_X."""\nimport os\n\ndef f():\n    """LAUNCH_Y"""\n'
                      '    return os.environ.get("LAUNCH_RUN_DIR")\n')
    assert launch_names(module) == [(6, "LAUNCH_RUN_DIR")]


def test_every_variable_is_named_once_and_round_trips() -> None:
    names = list(ENV.values())
    assert len(set(names)) == len(names) and all(n.startswith(PREFIX) for n in names)
    full = RuntimeSettings(volume=Path("/v"), checkpoint_dir=Path("/w"), run_dir=Path("/r"), run_id="r1",
                           lease="", code_root=Path("/c"), repo_root=Path("/repo"), workdir=Path("/s"),
                           control_dir=Path("/ctl"),
                           processes=2, events=True, attempt=3, supervisor_pid=7, lifeline_fd=9,
                           debug=True, fault="kill:step:2", fault_attempt=2, timeline=Path("/t"),
                           master_port=29501)
    env = full.to_env()
    assert set(env) == set(names)
    assert env["LAUNCH_DEBUG"] == "1" and env["LAUNCH_PROCESSES"] == "2" and env["LAUNCH_LEASE"] == ""
    back = RuntimeSettings.from_env(env)
    assert back == dataclasses.replace(full, lease=None)  # an empty variable is not set


def test_nothing_set_is_modal_and_falls_back_to_the_spec() -> None:
    settings = RuntimeSettings.from_env({"LAUNCH_DEBUG": "0", "LAUNCH_EVENTS": "", "OTHER": "x",
                                         "LAUNCH_MASTER_PORT": "x"})
    assert settings == RuntimeSettings() and settings.to_env() == {}
    assert settings.mount("/checkpoints") == Path("/checkpoints")
    assert settings.runs("job").name == "job"
    given = RuntimeSettings.from_env({"LAUNCH_CHECKPOINT_DIR": "/w", "LAUNCH_RUN_DIR": "/r"})
    assert given.mount("/checkpoints") == Path("/w") and given.runs("job") == Path("/r")
