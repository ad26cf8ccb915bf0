"""The checkpoint volume as the runtime sees it: `commit()` and `reload()`, nothing more.

On Modal the generated app passes its `modal.Volume`; locally the worker passes a
`LocalVolume`. The runtime never imports modal and never asks a volume for anything else,
so a new kind of volume (one that is honest to Modal's commit/reload semantics, say) is a
new class here, not new branches in the session, the loop or the checkpoint manager.

What a caller may rely on, as on Modal: files written under the mount are durable and
visible to other containers only after `commit()`; `reload()` shows other containers'
commits and must not run while this process holds files open on the volume.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol


class Volume(Protocol):
    def commit(self) -> None: ...

    def reload(self) -> None: ...


class LocalVolume:
    """A directory standing in for a Modal Volume: writes are durable once fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.commits = 0

    def commit(self) -> None:
        os.sync()  # what Modal does before its final commit; the checkpoint store fsyncs too
        self.commits += 1

    def reload(self) -> None:
        """Nothing to fetch: this process sees the directory as it is."""
