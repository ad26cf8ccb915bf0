"""Runtime log lines and events leave in whole lines, whichever thread writes them: locally
stdout and stderr share one pipe, and the supervisor parses each `@@launch` line as JSON."""

from __future__ import annotations

import threading

import pytest

from launcher.runtime import events


class Recorder:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_each_line_is_one_write_from_any_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = Recorder()  # what the supervisor reads: both streams
    monkeypatch.setattr("sys.stdout", pipe)
    monkeypatch.setattr("sys.stderr", pipe)
    monkeypatch.setenv("LAUNCH_EVENTS", "1")

    def speak(n: int) -> None:
        for i in range(200):
            events.emit("checkpoint", step=i, writer=n)
            events.log(f"step {i} from thread {n}")

    threads = [threading.Thread(target=speak, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(pipe.writes) == 800
    assert all(text.endswith("\n") and text.count("\n") == 1 for text in pipe.writes)
