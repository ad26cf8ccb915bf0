"""Render a JobSpec into the source of a Modal app: one Jinja environment, values via repr."""

from __future__ import annotations

import json
import os
import pprint
import shlex
from pathlib import Path
from typing import Any

import jinja2
import yaml

from launcher import __version__
from launcher.codesource import CodeSource
from launcher.resources import data_dir
from launcher.runtime.control.stop import STOP_DICT
from launcher.spec.model import JobSpec
from launcher.spec.pipeline import driver_timeout_s

# The Modal class of each pipeline stage (names from launcher's own table, never the spec's).
STAGE_CLASSES = {"prepare": "Prepare", "evaluate": "Evaluate"}


def py(value: Any) -> str:
    """The only way a value enters generated source: a Python literal (repr), line-wrapped."""
    return pprint.pformat(value, width=96, sort_dicts=True)


def yaml_value(value: Any) -> str:
    """A value as YAML flow text that reads back as the same value: 'no' stays a string."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1 << 30)
    text = text.removesuffix("\n...\n").removesuffix("\n")  # a bare scalar's document end
    # PyYAML folds a string with a newline over several lines; JSON (valid YAML) keeps one line,
    # so the value cannot leave the line or the indentation a template put it on.
    return json.dumps(value) if "\n" in text else text


def comment(value: str) -> str:
    """Text for a comment or docstring line: escapes newlines, quotes and line separators."""
    return repr(str(value))[1:-1].replace('"""', '\\"\\"\\"')


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Jinja's own on-disk cache of compiled templates: it saves most of a dry-run's render time."""
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "launcher" / "jinja"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only home only costs speed
    return jinja2.FileSystemBytecodeCache(str(folder))


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        bytecode_cache=_bytecode_cache(),
        undefined=jinja2.StrictUndefined,  # a missing variable is a bug, never an empty string
        keep_trailing_newline=True,  # the generated file ends in a newline, like any source file
        autoescape=False,  # Python source, not HTML; values are quoted by `py` instead
    )
    env.filters["py"] = py
    env.filters["comment"] = comment
    env.filters["yaml"] = yaml_value  # for YAML templates, as `py` is for Python ones
    return env


def import_check(spec: JobSpec) -> str:
    """The image's last step: import the runtime, then the recipe's and the stages' modules (and
    so the user's package), as the container will."""
    runtime = ["launcher.runtime.train.session",
               *(["launcher.runtime.pipeline.stage_session"] if spec.stages else [])]
    modules = [ref.split(":")[0] for ref in [spec.train.recipe, *(s.run for s in spec.stages)]]
    return "python -c " + shlex.quote("import " + ", ".join(dict.fromkeys(runtime + modules)))


def render(spec: JobSpec, source: str, code: CodeSource) -> str:
    """The app's source, byte-identical for the same inputs; compiled before it is returned."""
    text = environment().get_template("modal_app.py.j2").render(
        version=__version__, source=source, spec=spec, spec_dict=spec.to_dict(),
        spec_hash=spec.hash, code=code, stage_classes=STAGE_CLASSES, import_check=import_check(spec),
        driver_timeout_s=driver_timeout_s(spec), stop_dict=STOP_DICT,
    )
    compile(text, source.replace("\0", "\\0"), "exec")  # a file name for tracebacks: no NUL allowed
    return text
