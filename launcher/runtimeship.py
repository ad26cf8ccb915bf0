"""The launcher runtime in the image: exactly the installation that rendered the app.

Whatever the user's Dockerfile installs, the app adds two steps after it: the runtime's
dependencies pinned to the versions installed here (where `--local` rehearses), then this
installation's own `launcher` package as source, first on PYTHONPATH. No step asks an index for
the launcher by name (PyPI's `launcher` is another project).

The generated app imports this module at deploy time and inside the container (where only
`RUNTIME_ROOT` matters), so it keeps to the standard library.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import launcher
from launcher.errors import RunError

DIST = "modal-launcher"  # the distribution; `launcher` is the import package
RUNTIME_ROOT = "/opt/launcher"  # the image holds the package at /opt/launcher/launcher
# The runtime's own dependencies (pyproject's `local` extra: tests/test_extras.py keeps them equal).
RUNTIME_DISTS = ("torch", "accelerate", "numpy", "tensorboard", "tqdm")
# Left out of the shipped package: bytecode of this machine's interpreter.
PACKAGE_IGNORE = ("**/__pycache__", "**/*.pyc")
# uv in the image, pinned: the starter Dockerfile's and the app's own install step.
UV_VERSION = "0.13.8"


def package_dir() -> Path:
    """The `launcher` package this process imports: what the image runs."""
    return Path(launcher.__file__).resolve().parent


def public_version(version: str) -> str:
    """`2.13.0+cpu` -> `2.13.0`: the local label names a build (CPU, a CUDA version), and the
    image keeps its own build of the same release."""
    return version.split("+", 1)[0]


def pins(rendered_by: str) -> list[str]:
    """The image's runtime dependencies (see `installed_pins`); refused when this launcher is
    not the version that rendered the app. Inside the container the image is built already:
    nothing to pin."""
    import modal

    if not modal.is_local():
        return []
    if rendered_by != launcher.__version__:
        raise RunError(f"this app was rendered by launcher {rendered_by}, but launcher "
                       f"{launcher.__version__} is installed here; render it again with "
                       "`launch --dry-run SPEC --out FILE`, or launch the spec itself")
    return installed_pins()


def installed_pins(names: tuple[str, ...] = RUNTIME_DISTS) -> list[str]:
    """`name==version` for each runtime dependency installed here, the `local` extra's own
    range for one that is not (a CLI-only install that never rehearsed)."""
    ranges = extra_ranges()
    found = []
    for name in names:
        try:
            found.append(f"{name}=={public_version(importlib.metadata.version(name))}")
        except importlib.metadata.PackageNotFoundError:
            found.append(ranges.get(name, name))
    return found


_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def extra_ranges(extra: str = "local") -> dict[str, str]:
    """The `local` extra's requirements by name, as this installation's metadata lists them
    (`torch>=2.4`); empty when launcher runs from a source tree that was never installed."""
    try:
        requires = importlib.metadata.requires(DIST) or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    marker = re.compile(rf"""extra\s*==\s*["']{re.escape(extra)}["']""")
    found = {}
    for line in requires:
        requirement, _, markers = line.partition(";")
        name = _NAME.match(requirement)
        if name and marker.search(markers):
            found[name.group(1).lower()] = requirement.strip()
    return found


def install_hint(extra: str = "local") -> str:
    """The pip command that adds `extra` to this installation, from where it was installed:
    a checkout (editable or not), a wheel file, or an index (PEP 610's direct_url.json)."""
    # Every copy of the metadata on sys.path: a source tree's own egg-info records no origin.
    origins = [d.read_text("direct_url.json") for d in importlib.metadata.distributions(name=DIST)]
    for origin in filter(None, origins):
        try:
            direct = json.loads(origin)
        except json.JSONDecodeError:
            direct = {}
        url = str(direct.get("url", ""))
        if url.startswith("file://"):
            editable = "-e " if direct.get("dir_info", {}).get("editable") else ""
            return f"pip install {editable}'{url.removeprefix('file://')}[{extra}]'"
    return f"pip install '{DIST}[{extra}]'"
