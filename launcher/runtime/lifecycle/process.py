"""A training process's start and end, where the interpreter's defaults cost seconds.

Start-up (imports of torch, accelerate and modal; the recipe built in stage 1) makes a few
million objects that live as long as the process. The cyclic garbage collector, left on,
scans them again and again while they are made (about 0.5 s of a 3 s start here), and again
at every full collection while training. So the collector is paused for start-up, and at
its end everything made so far is frozen (`gc.freeze`: never scanned again) before the
collector comes back on: what Python's documentation advises before a fork too, which is
what Accelerate's `notebook_launcher` does next with more than one process.

At the end, the interpreter's teardown frees those objects one by one: 1.3 s here, after
the work is done and the checkpoint committed. `exit_fast` ends the process the way
multiprocessing ends its children instead: exit handlers run, standard streams are
flushed, then `os._exit`.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from typing import NoReturn


def pause_gc() -> None:
    """From here to `end_of_startup`, no cyclic collection."""
    gc.disable()


def end_of_startup() -> None:
    """Freeze what start-up made, then turn the collector back on."""
    gc.freeze()
    gc.enable()


class FastExit:
    """Make the interpreter's exit skip its teardown, once the exit code is known.

    Made before anything registers an exit handler (atexit runs them last in, first out),
    its own handler runs last: every other handler (logging's, multiprocessing's, a
    recipe's own) has run by then, and so has the join of non-daemon threads.
    """

    def __init__(self) -> None:
        global _fast
        self.code: int | None = None
        atexit.register(self._exit)
        _fast = self

    def _exit(self) -> None:
        if self.code is None:  # an unexpected end (a traceback): let Python finish as usual
            return
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # closed, or the reader went away
                pass
        os._exit(self.code)


_fast: FastExit | None = None  # this worker's, once made (inherited by the processes it forks)


def exit_forked(code: int) -> NoReturn:
    """End a process forked from a worker (an attempt restored from a local snapshot) as the
    worker ends: SystemExit unwinds to the worker's main, the interpreter runs the exit
    handlers (the recipe's among them), FastExit's last, which skips the teardown. A process
    forked from elsewhere (a test harness that forks workers) runs none: they are not its."""
    if _fast is not None:
        _fast.code = code
        raise SystemExit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
