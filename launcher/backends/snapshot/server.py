"""The worker's side of the local snapshot: the zygote's loop, a class's snapshot process, and
the attempts restored from it (see the package's docstring for the tree).

The worker that the supervisor started (its imports done) becomes the run's zygote on the
first `go` that asks for a snapshot. It imports the app once; for each attempt it is asked for,
it hands the command to its class's snapshot process, forking that one first (which runs the
class's stage 1, once), and writes the attempt's exit code on its output after the attempt's
last line. A snapshot process forks one attempt per command; the attempt runs stage 2, the
input, the exit hooks and the final commit, in this attempt's working copy of the volume.

What each attempt gets afresh, as a container restored on Modal does: its own process (no
thread of the snapshot survives a fork: the lifeline watch is started again), its
environment (the attempt's number; fault injection armed for it), the volume's working copy
(attached to the `Mount` the session was built with), and Python's `random` state as the
snapshot left it (CPython reseeds it from the OS in a forked child, which a fresh worker would
not do; torch's and numpy's generators are copied with the memory). A stage 1 that leaves
behind what a snapshot cannot carry is refused (rules.py).
"""

from __future__ import annotations

import json
import os
import random
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import IO, Any

from launcher.backends.snapshot import ATTEMPT, EXITED, rules
from launcher.runtime import events, faults
from launcher.runtime.failures import EXIT_OK, EXIT_TRANSIENT, LauncherBug, PermanentError
from launcher.runtime.lifecycle import lifeline, process, timeline
from launcher.runtime.lifecycle.container import Hooks, run_input
from launcher.runtime.settings import PREFIX, current
from launcher.runtime.storage.volume import LocalVolume, Volume

# The object behind the app's class for a stage (built on a volume), and its one input.
Build = Callable[[ModuleType, str, Volume], tuple[Hooks, Callable[[], dict[str, Any]]]]
# Runs an attempt's body; its exit code, whatever the body raised (worker.outcome).
Outcome = Callable[[Callable[[], int]], int]


class Mount:
    """The volume as a snapshot holds it: the session is built in stage 1, before any attempt
    has a working copy; each restored attempt attaches its own. Its path is the same in every
    attempt of the class, as a container's mount is."""

    def __init__(self) -> None:
        self.volume: Volume | None = None

    def _attached(self) -> Volume:
        if self.volume is None:
            raise RuntimeError("no working copy attached: only stage 1 runs before the restore")
        return self.volume

    def commit(self) -> None:
        self._attached().commit()

    def reload(self) -> None:
        self._attached().reload()


def serve(first: dict[str, Any], commands: IO[str], module: ModuleType, build: Build,
          outcome: Outcome) -> int:
    """The zygote's loop: every attempt asked for on `commands`, the first being `first`.
    Ends when the supervisor closes our input."""
    timeline.mark("zygote")
    snapshots: dict[str, Snapshot] = {}

    def take(command: dict[str, Any]) -> Snapshot:
        snapshot = snapshots.get(command["stage"])
        if snapshot is None or snapshot.spent:
            snapshot = snapshots[command["stage"]] = Snapshot.fork(module, command, build, outcome,
                                                                   others=snapshots.values())
        return snapshot

    def ahead(command: dict[str, Any]) -> None:
        # The later stages' snapshots are taken while this attempt works (on Modal they exist
        # before the call): once, after its stage 2, so that its own start is not slowed.
        if command is first:  # measured once, while the attempt works: off every start's path
            timeline.mark("zygote_memory", **memory())
        for later in command.get("ahead", []):
            take(later)

    command: dict[str, Any] | None = first
    while command is not None:
        snapshot = take(command)
        events.emit(EXITED, code=snapshot.run(command, lambda c=command: ahead(c)))
        command = _next(commands)
    return EXIT_OK


def _next(commands: IO[str]) -> dict[str, Any] | None:
    line = commands.readline()
    return json.loads(line) if line else None


def _flush() -> None:
    """Before a fork: what is buffered would otherwise be written twice."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _forked(child: Callable[[], int], attempt: bool) -> int:
    """Fork; the child's pid here. The child runs `child` and ends with its code: an attempt as
    a worker ends (its exit handlers run), a snapshot process at once (it is no container)."""
    _flush()
    pid = os.fork()
    if pid:
        return pid
    code = EXIT_TRANSIENT
    try:
        code = child()
    except Exception:  # a bug of ours: say it, and end this process only
        import traceback

        traceback.print_exc()
    if attempt:
        process.exit_forked(code)
    _flush()
    os._exit(code)


@dataclass
class Snapshot:
    """In the zygote: one class's snapshot process, its command pipe and its status pipe."""

    pid: int
    commands: IO[str]
    status: IO[str]
    spent: bool = field(default=False)

    @classmethod
    def fork(cls, module: ModuleType, command: dict[str, Any], build: Build, outcome: Outcome,
             others: Iterable[Snapshot]) -> Snapshot:
        into, commands = os.pipe()
        status, out = os.pipe()

        def child() -> int:
            os.close(commands)
            os.close(status)
            for other in others:  # not ours to hold open: they see EOF when the zygote dies
                other.close()
            return snapshot_main(module, command, os.fdopen(into, "r"), out, build, outcome)

        pid = _forked(child, attempt=False)
        os.close(into)
        os.close(out)
        return cls(pid, os.fdopen(commands, "w"), os.fdopen(status, "r"))

    def run(self, command: dict[str, Any], ready: Callable[[], None]) -> int:
        """One attempt: its exit code (the snapshot's own, if the snapshot died meanwhile).
        `ready()` is called when the attempt's stage 2 is done."""
        try:
            self.commands.write(json.dumps(command) + "\n")
            self.commands.flush()
        except BrokenPipeError:
            pass  # it died: its status pipe says so
        while line := self.status.readline():
            said = json.loads(line)
            if "code" not in said:
                ready()
                continue
            if said["spent"]:
                self._reap()
            return int(said["code"])
        return self._reap()

    def _reap(self) -> int:
        self.spent = True
        self.close()
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)

    def close(self) -> None:
        for stream in (self.commands, self.status):
            try:
                stream.close()
            except OSError:
                pass


@dataclass
class Restore:
    """What every attempt of a class starts from: the session after stage 1, and what stage 1
    left that no attempt may run with."""

    obj: Hooks | None
    call: Callable[[], dict[str, Any]] | None
    mount: Mount
    rng: Any
    failed: BaseException | None = None  # stage 1 raised: each attempt raises it again
    refused: list[str] = field(default_factory=list)
    job: str | None = None  # the job whose folder an attempt's commits may change


def snapshot_main(module: ModuleType, command: dict[str, Any], commands: IO[str], status: int,
                  build: Build, outcome: Outcome) -> int:
    """A class's snapshot process: stage 1 (with the settings of `command`, the attempt that
    asked for it), then one attempt per command on `commands`, that one first."""
    lifeline.rearm()  # dies with the zygote
    timeline.mark("snapshot_start")
    _no_stdin()
    _settings(command)
    snap = stage1(module, command["stage"], command["snapshot"], build)
    # A GPU snapshot keeps device state, which a fork cannot: with CUDA initialized, the
    # attempt runs in this process, which is then spent (the next one takes a new snapshot).
    here = snap.failed is None and command["snapshot"] == "gpu" and rules.cuda_initialized()
    spent = snap.failed is not None or here
    current = _next(commands)
    first = True
    while current is not None:
        code = restored(snap, current, outcome, status) if here else \
            _attempt(snap, current, outcome, commands, status, measure=first)
        first = False
        os.write(status, (json.dumps({"code": code, "spent": spent}) + "\n").encode())
        if spent:
            return EXIT_OK
        current = _next(commands)
    return EXIT_OK


def stage1(module: ModuleType, stage: str, mode: str, build: Build) -> Restore:
    """Build the class's object on a `Mount` and run its stage 1, as before a snapshot."""
    mount = Mount()
    before = rules.baseline()
    obj = call = None
    failed: BaseException | None = None
    try:
        obj, call = build(module, stage, mount)
        obj.stage1()
    except BaseException as exc:  # noqa: BLE001  raised again in the attempt, which reports it
        failed = exc
    refused = rules.problems(before, mode, stage) if failed is None else []
    process.end_of_startup()  # frozen: never scanned again, and pages stay shared after a fork
    timeline.mark("snapshot")
    return Restore(obj, call, mount, random.getstate(), failed, refused, module.SPEC["name"])


def _attempt(snap: Restore, command: dict[str, Any], outcome: Outcome, commands: IO[str],
             status: int, measure: bool) -> int:
    """Fork the attempt and wait for it; `measure`: mark this process's memory meanwhile."""
    def child() -> int:
        lifeline.rearm()  # dies with the snapshot process
        commands.close()
        code = restored(snap, command, outcome, status)
        timeline.mark("worker_exit")
        return code

    pid = _forked(child, attempt=True)
    if measure:
        timeline.mark("snapshot_memory", **memory())
    _, waited = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(waited)


def restored(snap: Restore, command: dict[str, Any], outcome: Outcome, status: int) -> int:
    """One attempt, from the snapshot: stage 2, the input, the exit hooks, the final commit.
    The zygote hears on `status` when stage 2 is done (the input begins)."""
    _settings(command)
    random.setstate(snap.rng)
    timeline.mark("restore")
    events.emit(ATTEMPT, pid=os.getpid())

    def body() -> int:
        if snap.failed is not None:
            raise snap.failed
        if snap.refused:
            raise PermanentError("; ".join(snap.refused))
        assert snap.obj is not None and snap.call is not None
        volume = LocalVolume.of(current(), snap.job)
        snap.mount.volume = volume
        call = snap.call

        def started() -> dict[str, Any]:
            os.write(status, b"{}\n")
            return call()

        result = run_input(snap.obj, started, volumes=(volume,), restored=True)
        if result.get("status") == "permanent":
            raise (LauncherBug if result.get("bug") else PermanentError)(result["error"])
        return EXIT_OK

    return outcome(body)


def _settings(command: dict[str, Any]) -> None:
    """This attempt's LAUNCH_* settings, and fault injection armed for its number."""
    os.environ.update({k: v for k, v in command["env"].items() if k.startswith(PREFIX)})
    faults.arm_from(current())


def _no_stdin() -> None:
    """The zygote's input is the supervisor's; a snapshot and its attempts read none of it."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115  stands for fd 0 as long as the process


def memory() -> dict[str, float]:
    """This process's resident memory and its proportional share of pages shared with the
    processes it was forked from or forked (MiB; Linux, for bench/snapshot.py), {} elsewhere
    or when no timeline is kept (reading them walks the page tables)."""
    found: dict[str, float] = {}
    if not timeline.enabled():
        return found
    for path, key, name in (("/proc/self/status", "VmRSS:", "rss_mib"),
                            ("/proc/self/smaps_rollup", "Pss:", "pss_mib")):
        try:
            lines = open(path).read().splitlines()  # noqa: SIM115  a tiny read
        except OSError:
            continue
        kib = next((line.split()[1] for line in lines if line.startswith(key)), None)
        if kib is not None:
            found[name] = round(int(kib) / 1024, 1)
    return found
