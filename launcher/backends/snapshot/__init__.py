"""The local memory snapshot: stage 1 once, every attempt, stage and retry restored from it.

On Modal, a class with `snapshot: cpu` (or `gpu`) runs its imports and stage 1 once, its
container's memory is snapshotted, and every later container of that class, retries
included, starts from the restored snapshot. Locally a fork server rehearses it, for the
stages whose snapshot is not `none`:

    launch (supervisor)
      worker            imports modal, torch, accelerate, then the app: the run's zygote
        snapshot        one per class (train, prepare, evaluate): stage 1, then waits
          attempt       one per attempt, forked from its class's snapshot: stage 2, the input,
                        the exit hooks, the final commit

`client` is the supervisor's side (`Snapshots`: start an attempt, read its output and exit
code, signal it); `server` is the worker's side (the zygote's loop, the snapshot process,
the restored attempt); `rules` refuses a stage 1 that leaves behind what a snapshot does
not carry (CUDA state under `snapshot: cpu`, running threads, open sockets).

Every process dies with the one that forked it, however that one ends (runtime/lifecycle/lifeline.py),
so a `kill -9` of `launch` takes them all.
"""

from __future__ import annotations

# Events on the worker's output (runtime/events.py) that belong to the fork server: the
# restored attempt's pid (signals go to it), and its exit code (after its last line).
ATTEMPT = "restored"
EXITED = "exited"
