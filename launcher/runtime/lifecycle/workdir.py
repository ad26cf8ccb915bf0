"""`launch JOB --local --shipped`: a worker runs from the shipped tree, as a container runs from
/opt/project: that tree is the working directory and the first place imports look, and the
folder `launch` ran in is no longer searched (an untracked module there must not be found).

LAUNCH_WORKDIR arrives with the supervisor's go, after the worker's own imports (modal, torch,
accelerate: none of them the user's code), and before the app or the recipe is imported.
"""

from __future__ import annotations

import os
import sys

from launcher.runtime import settings


def enter() -> None:
    """Move into LAUNCH_WORKDIR, when set, and search it instead of the starting folder."""
    found = settings.current().workdir
    if found is None:
        return
    workdir = str(found)
    started = os.getcwd()
    sys.path[:] = [workdir, *(p for p in sys.path if p not in ("", ".", started, workdir))]
    sys.path_importer_cache.clear()
    os.chdir(workdir)
