"""Runs on Modal, as the CLI reads them: a volume's files through Modal's Volume API, whether a
function call is still running, and a call's logs.

The SDK calls used, and nothing else (tests/test_runs_modal.py holds them to modal's own
signatures): `Volume.from_name`, `Volume.listdir`, `Volume.read_file`, `FunctionCall.from_id`,
`FunctionCall.get(timeout=0)`, `FunctionCall.logs.fetch()` / `.stream()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from launcher.runtime.runs.record import RunRecord


class VolumeSource:
    """A Modal volume, read through its API (a launcher.runtime.runs.lookup.Source)."""

    def __init__(self, name: str, environment: str | None = None, volume: Any = None) -> None:
        self.name, self.environment = name, environment
        self._volume = volume

    @property
    def volume(self) -> Any:
        if self._volume is None:
            import modal

            where = {"environment_name": self.environment} if self.environment else {}
            self._volume = modal.Volume.from_name(self.name, **where)
        return self._volume

    def listdir(self, path: str) -> list[str]:
        from launcher.backends.modal import server_errors

        with server_errors(f"volume {self.name}"):
            try:
                entries = self.volume.listdir(path or "/")
            except FileNotFoundError:
                return []
            except Exception as exc:
                if type(exc).__name__ == "NotFoundError":  # a volume or folder that is not there
                    return []
                raise
        return sorted(PurePosixPath(e.path).name for e in entries)

    def read(self, path: str) -> bytes:
        return b"".join(self.stream(path))

    def stream(self, path: str) -> Iterator[bytes]:
        """The file's bytes as Modal sends them, in chunks (a checkpoint need not fit in memory)."""
        from launcher.backends.modal import server_errors

        with server_errors(f"volume {self.name}"):
            try:
                yield from self.volume.read_file(path)
            except Exception as exc:
                if type(exc).__name__ == "NotFoundError":
                    raise FileNotFoundError(path) from None
                raise


def from_id(call_id: str) -> Any:
    import modal

    return modal.FunctionCall.from_id(call_id)


def call_alive(record: RunRecord) -> bool | None:
    """Whether the run's coordinating call is still running; None when Modal cannot say now."""
    call_id = record.coordinator.get("call_id")
    if not call_id:
        return None
    try:
        from_id(call_id).get(timeout=0)
    except TimeoutError:
        return True  # not done yet
    except Exception as exc:
        name = type(exc).__name__
        if name in ("AuthError", "ConnectionError") or isinstance(exc, OSError):
            return None
        return False  # it ended: failed, cancelled, or its output expired
    return False  # it ended with a result


def call_logs(call_id: str, follow: bool) -> Iterator[str]:
    """The call's log lines, as Modal keeps them; `follow`: until the call ends."""
    call = from_id(call_id)
    entries = call.logs.stream() if follow else call.logs.fetch()
    for entry in entries:
        yield entry.message
