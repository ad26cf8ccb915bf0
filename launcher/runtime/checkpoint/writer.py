"""The background checkpoint writer: one thread, at most one write in flight.

`submit` first waits for the write before it, so a second checkpoint never starts while
one is being written (and never needs a second copy of the state in memory). A write that
failed raises its error, once, in the thread that next calls `submit`, `wait` or `close`:
the training thread, which then fails as a synchronous save would have.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class Writer:
    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    def submit(self, work: Callable[[], None]) -> None:
        self.wait()
        if self._pool is None:
            # Not a daemon: the interpreter's exit waits for a write under way to finish.
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self._pending = self._pool.submit(work)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
