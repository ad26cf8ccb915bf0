"""The top-level `schemas/` and `templates/` folders, from a checkout or an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """`schemas` or `templates`: inside the package in a wheel, at the top level in a checkout."""
    packaged = _PACKAGE / name
    return packaged if packaged.is_dir() else _PACKAGE.parent / name


def read_text(name: str, filename: str) -> str:
    return (data_dir(name) / filename).read_text("utf-8")
