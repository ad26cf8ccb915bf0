"""What a memory snapshot does not carry, refused after stage 1 instead of failing on Modal.

Modal's CPU memory snapshot is taken without a GPU: a stage 1 that initializes CUDA fails
there (a GPU snapshot, `snapshot: gpu`, is the way to keep device state). Live network
connections are not carried across a restore, and a fork, which the local rehearsal restores
by, carries no thread but the one that forks. Whatever stage 1 leaves running or open of
these would work locally, restored from a process where it still exists, and fail (or worse,
be shared between attempts) after a restore: so it is refused with a message that says why.

Torch's own native thread pools are not Python threads and are not counted: torch resets
them in a forked child.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Baseline:
    """What existed before stage 1 (the launcher's own threads and pipes)."""

    threads: frozenset[int]
    sockets: frozenset[str]


def baseline() -> Baseline:
    return Baseline(frozenset(t.ident or 0 for t in threading.enumerate()), frozenset(_sockets()))


def _sockets() -> dict[str, int]:
    """This process's open sockets (Linux: /proc/self/fd), by inode, with their descriptor."""
    found: dict[str, int] = {}
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        return found
    for entry in fds.iterdir():
        try:
            target = os.readlink(entry)
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
        if target.startswith("socket:"):
            found[target] = int(entry.name)
    return found


def cuda_initialized() -> bool:
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


def problems(before: Baseline, mode: str, stage: str) -> list[str]:
    """Why a snapshot of this process, now, would not restore as it runs here; [] if it would."""
    where = f"snapshot: {mode}: stage 1 of {stage}"
    found = []
    if mode == "cpu" and cuda_initialized():
        found.append(f"{where} initialized CUDA, and Modal takes a CPU memory snapshot without a "
                     "GPU: it fails there. Move device work to stage 2 (the recipe's setup), or "
                     "use snapshot: gpu")
    threads = [t.name for t in threading.enumerate() if (t.ident or 0) not in before.threads and t.is_alive()]
    if threads:
        found.append(f"{where} started {'threads' if len(threads) > 1 else 'a thread'} "
                     f"({', '.join(sorted(threads))}) still running at the snapshot; a restored "
                     "container (here: a fork of the snapshot) has none of them. Start "
                     f"{'them' if len(threads) > 1 else 'it'} after the restore (stage 2), or use "
                     "snapshot: none")
    sockets = sorted(fd for inode, fd in _sockets().items() if inode not in before.sockets)
    if sockets:
        found.append(f"{where} left {len(sockets)} socket{'s' if len(sockets) > 1 else ''} open "
                     f"(descriptor {', '.join(map(str, sockets))}); a memory snapshot does not "
                     "carry live connections across a restore. Open it after the restore (stage "
                     "2), or use snapshot: none")
    return found
