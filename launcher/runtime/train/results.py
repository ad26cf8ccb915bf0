"""The result file a forked worker leaves for the container's main process.

With more than one process, `train` runs in workers forked by Accelerate's launcher; the
result (or why a run stopped) reaches the main process through this file, since the
launcher returns nothing and reports every worker failure alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True))


def read(path: Path) -> dict[str, Any]:
    """The result written to `path`, or {} when no worker got that far."""
    return json.loads(path.read_text()) if path.is_file() else {}
