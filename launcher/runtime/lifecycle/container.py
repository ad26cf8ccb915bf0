"""A container's lifecycle without Modal: the session's hooks in the order Modal runs them.

Inside a Modal container the generated app's class is driven by Modal itself, in this order:
the `@modal.enter(snap=True)` hooks, the memory snapshot (deployed apps), the
`@modal.enter(snap=False)` hooks, the input (`train`), then the `@modal.exit()` hooks (also
after a failed enter hook or input), then a final commit of every mounted volume. Each of the
app's hooks calls the `Session` hook of the same name, so the same order here, on a
`Session` built from the app's own SPEC, is the same lifecycle on this machine: the local
worker (`launcher.backends.worker`) runs each attempt through `run_container`.
tests/test_lifecycle.py checks, for every golden app, that Modal's own reading of the class
and this function call the same session hooks with the same arguments, in the same order.

Only names we own are used: Modal's container internals may change between releases.

Modal's final commit of every mounted volume after the exit hooks is done here too (the
`volumes` given): with a local volume that keeps uncommitted writes apart, as Modal does, what
the exit hook leaves (retention after the last checkpoint, say) is committed the same way. A
killed worker never gets there, as a killed container never does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from launcher.runtime import events
from launcher.runtime.storage.volume import Volume


class Hooks(Protocol):
    """The enter and exit hooks of the plain object behind a Modal class."""

    def stage1(self) -> None: ...

    def stage2(self) -> None: ...

    def shutdown(self) -> None: ...


class Container(Hooks, Protocol):
    """The training class's object: its hooks and its one method, `train`."""

    def train(self, resume: bool = True, steps: int | None = None,
              cluster: Any = None, lease: str = "") -> dict[str, Any]: ...


def run_container(obj: Container, *, resume: bool = True, steps: int | None = None,
                  cluster: Any = None, volumes: Sequence[Volume] = (),
                  lease: str = "") -> dict[str, Any]:
    """Enter hooks, one `train` input, the exit hooks, then a commit of `volumes`, as in a
    Modal container.

    `cluster` is what `modal.Cluster.from_context()` gives inside a clustered container (a
    stand-in with `container_ips()` and `container_rank()`); None on one node. `lease`: the
    pipeline driver's call id, as the driver passes it to `train` (empty for a single job).
    """
    return run_input(obj, lambda: obj.train(resume=resume, steps=steps, cluster=cluster, lease=lease),
                     volumes)


def run_input(obj: Hooks, call: Callable[[], dict[str, Any]],
              volumes: Sequence[Volume] = (), restored: bool = False) -> dict[str, Any]:
    """Enter hooks, one input (`call`, a method of `obj`), the exit hooks, then a commit of
    `volumes`: a stage's class (launcher.runtime.pipeline.stage_session) goes through the same
    container order with its `run`. `restored`: `obj` ran stage 1 before a snapshot this process
    was restored from (launcher.backends.snapshot), so it starts at stage 2."""
    try:
        if not restored:
            obj.stage1()  # before the memory snapshot (when the spec asks for one)
        obj.stage2()  # after the restore
        return call()
    finally:
        _exit(obj, volumes)


def _exit(obj: Hooks, volumes: Sequence[Volume]) -> None:
    try:
        obj.shutdown()
    except Exception as exc:  # never hide why the attempt ended
        events.log(f"warning: exit hook failed: {type(exc).__name__}: {exc}")
    for volume in volumes:
        try:
            volume.commit()
        except Exception as exc:
            events.log(f"warning: the final commit of the volume failed: {type(exc).__name__}: {exc}")
