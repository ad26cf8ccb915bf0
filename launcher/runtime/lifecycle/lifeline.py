"""A worker dies with the process that started it, however that one ends.

The local worker runs in its own session (so that Ctrl-C reaches the supervisor alone), so a
`kill -9` of `launch` would leave it training and publishing checkpoints under nobody's
supervision, racing the next run. Two independent lines hold it:

- the parent-death signal (Linux, `prctl(PR_SET_PDEATHSIG, SIGKILL)`): the kernel kills the
  worker as soon as its parent exits;
- a pipe watch (portable): the supervisor keeps the write end of a pipe open and never writes
  to it; the worker gets the read end (its number in LAUNCH_LIFELINE_FD) and, when the
  supervisor dies, reads EOF and kills itself. Stdin stays free for whatever else uses it.

Processes forked from the worker (one per GPU, by Accelerate's launcher; a local snapshot's
processes and the attempts restored from them, launcher/backends/snapshot) call `rearm()`: the
parent-death signal does not survive a fork, and each watches the same pipe. In a Modal
container nothing is armed in the main process (Modal supervises it); the forked per-GPU
processes still die with it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import stat
import sys
import threading

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_watch_fd: int | None = None
_owner = os.getpid()  # the process that armed (or loaded this module): the parent of the ones that rearm


def arm(parent: int, pipe: int | None = None) -> None:
    """In the worker: die with `parent` (the supervisor's pid), and when the supervisor's end
    of `pipe` (a file descriptor: the read end) closes."""
    global _watch_fd, _owner
    _die_with(parent)
    _owner = os.getpid()
    if pipe is not None and stat.S_ISFIFO(os.fstat(pipe).st_mode):
        _watch_fd = pipe
        _watch(pipe)


def rearm() -> None:
    """In a process forked by the worker (or by a Modal container): die with that one too.
    Nothing to do in that process itself (a launcher that runs one process in place)."""
    global _owner
    if os.getpid() == _owner:
        return
    _die_with(_owner)
    _owner = os.getpid()  # the processes this one forks (a local snapshot's attempts) die with it
    if _watch_fd is not None:
        _watch(_watch_fd)


def _die_with(parent: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the signal was set up
        os.kill(os.getpid(), signal.SIGKILL)


def _watch(fd: int) -> None:
    def wait_for_eof() -> None:
        try:
            while os.read(fd, 4096):
                pass
        except OSError:
            return  # not a pipe we can watch: the parent-death signal still holds
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=wait_for_eof, name="launch-lifeline", daemon=True).start()
