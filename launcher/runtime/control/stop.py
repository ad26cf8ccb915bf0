"""Stop requests: how `launch stop RUN` reaches a running training loop, locally and on Modal.

A request is a small JSON object kept under the run's id: `{"run": ..., "now": false,
"requested": <unix seconds>, "by": "user@host"}`. The loop asks for it between two updates
(never inside one), writes and commits a final checkpoint, and ends the stage as `stopped`:
not failed, not retried, no later stage, the job's lease released (train/loop.py).

Where it is kept, and why:

- On Modal, in a `modal.Dict` (`STOP_DICT`, in the job's Modal Environment), handed to the
  runtime by the generated app. Not a file on the volume: a container sees a file that another
  client wrote only after `volume.reload()`, which fails while any file on the volume is open
  (a checkpoint being written in the background) and would have to run every few seconds in
  the loop; and a Volume is last-write-wins per file, with the run itself committing its folder
  at every checkpoint. A Dict is made for small shared values: one `get` is one small server
  call, asked at most every `REMOTE_POLL_S` seconds, so a stop lands within that time plus one
  update, well inside anything a user waits for.
- Locally, in a folder (`<volumes>/@control/`, given to the worker in its settings), one
  file per run: asking is one `stat` per update. `launch stop` also signals the supervisor
  (SIGUSR1), which starts no further attempt and, for `--now`, kills the worker's process group.

The runtime sees only something with `get(key)`, so it never imports modal.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from launcher.runtime import events

STOP_DICT = "launch-stop-requests"  # the modal.Dict that keeps requests on Modal
REMOTE_POLL_S = 10.0  # how often a loop on Modal asks the Dict


@dataclass(frozen=True)
class StopRequest:
    run: str
    now: bool = False
    requested: float = 0.0
    by: str = ""

    @classmethod
    def make(cls, run: str, now: bool) -> StopRequest:
        return cls(run, now, time.time(), f"{_user()}@{socket.gethostname()}")

    @classmethod
    def of(cls, value: Any) -> StopRequest | None:
        """A stored value as a request; None when it is not one (damaged, or another's)."""
        if not isinstance(value, dict) or not isinstance(value.get("run"), str):
            return None
        return cls(value["run"], bool(value.get("now")), float(value.get("requested") or 0.0),
                   str(value.get("by") or ""))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return "unknown"


class Requests(Protocol):
    """Where requests are kept: a FolderRequests here, a modal.Dict on Modal."""

    def get(self, key: str, default: Any = None) -> Any: ...


class FolderRequests:
    """Requests as files: `<folder>/<run id>.json`, each written whole and renamed into place."""

    poll_s = 0.0  # a stat: cheap enough for every update

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"not a run id: {key!r}")
        return self.folder / f"{key}.json"

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return json.loads(self._path(key).read_text("utf-8"))
        except (OSError, ValueError):
            return default

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
        tmp.write_text(json.dumps(value), "utf-8")
        os.replace(tmp, path)

    def pop(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def local_requests(folder: Path | None) -> FolderRequests | None:
    """The local store the supervisor named (settings' `control_dir`), or None."""
    return FolderRequests(folder) if folder is not None else None


class StopWatch:
    """Asks `requests` for a stop of the run `key()` names, at most every `poll_s` seconds (the
    store's own `poll_s`, else REMOTE_POLL_S). A store that fails is said once and taken as no
    request: a stop that cannot be read never stops, or fails, a run."""

    def __init__(self, requests: Requests, key: Callable[[], str | None],
                 poll_s: float | None = None) -> None:
        self.requests, self.key = requests, key
        self.poll_s = getattr(requests, "poll_s", REMOTE_POLL_S) if poll_s is None else poll_s
        self._asked = float("-inf")
        self._warned = False
        self.request: StopRequest | None = None

    def requested(self) -> StopRequest | None:
        key = self.key()
        if not key:
            return None
        if self.request is not None and self.request.run == key:
            return self.request  # asked once: stays asked (a warm container's next call differs)
        now = time.monotonic()
        if now - self._asked < self.poll_s:
            return None
        self._asked = now
        try:
            found = StopRequest.of(self.requests.get(key))
        except Exception as exc:  # whatever the store raises (a network error on Modal)
            if not self._warned:
                events.log(f"warning: cannot read stop requests: {type(exc).__name__}: {exc}")
                self._warned = True
            return None
        self.request = found if found is not None and found.run == key else None
        return self.request
