"""The top-level `schemas/` and `templates/` folders, from a checkout or an installed wheel."""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable
from pathlib import Path


def data_dir(name: str) -> Traversable:
    """`schemas` or `templates`: shipped as `launcher.<name>` in a wheel, at the top level here."""
    try:
        return resources.files(f"launcher.{name}")
    except ModuleNotFoundError:  # running from a checkout: the package dir shadows the wheel map
        return Path(__file__).resolve().parent.parent / name


def read_text(name: str, filename: str) -> str:
    return data_dir(name).joinpath(filename).read_text("utf-8")
