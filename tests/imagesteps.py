"""A generated app's image, read offline from Modal's own objects: each layer's Dockerfile
commands (as Modal's builder would get them) and the files a copy layer uploads.

Modal keeps an image's recipe in the closure of its loader; this reads the same closures the
builder calls (`dockerfile_function`, `context_mount_function`), so a test sees what would be
built, not what the app's text seems to say.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modal._utils.async_utils import synchronizer

BUILDER = "2025.06"  # an image builder version Modal 1.6 knows


@dataclass
class Layer:
    name: str
    commands: list[str]
    files: dict[str, Path]  # remote path -> local file, for a layer that copies files in


def _cells(image: Any) -> dict[str, Any]:
    load = image._load
    return dict(zip(load.__code__.co_freevars, [c.cell_contents for c in (load.__closure__ or ())]))


def layers(image: Any) -> list[Layer]:
    """The image's layers, the Dockerfile's first."""
    found = []
    current = synchronizer._translate_in(image)
    while current is not None:
        cells = _cells(current)
        if "dockerfile_function" not in cells:  # from_dockerfile: the user's file, the base
            found.append(Layer(f"dockerfile {cells.get('path')}", [], {}))
            break
        make = cells["dockerfile_function"]
        mount = cells["context_mount_function"](BUILDER) if cells["context_mount_function"] else None
        files = {str(remote): Path(local) for entry in (mount.entries if mount else [])
                 for local, remote in entry.get_files_to_upload()}
        found.append(Layer(make.__qualname__.split(".")[1], make(BUILDER).commands, files))
        bases = cells["base_images"]
        current = next(iter(bases.values())) if bases else None
    return found[::-1]
