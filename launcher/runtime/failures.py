"""How an attempt ended, as the supervisor (local) or Modal's retry policy should treat it.

A worker process exits with one of these codes; the local supervisor maps them to retry
decisions, and the summary names the class of each attempt's end.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_TRANSIENT = 1  # anything unexpected: retried with the spec's backoff
EXIT_PERMANENT = 65  # cannot succeed on a retry: not retried
EXIT_PREEMPTED = 75  # stopped on a signal after a final checkpoint: restarted, no retry spent


class PermanentError(Exception):
    """A failure that a retry cannot fix: bad recipe, bad config, a diverged loss."""


class VolumeError(Exception):
    """The volume itself failed (a reload or commit): infrastructure, retried like any transient
    failure, even before the first update (where an error of the job's own is permanent)."""


class Preempted(Exception):
    """The run stopped on SIGINT/SIGTERM after writing and committing a checkpoint."""


def classify(exit_code: int | None) -> str:
    """The failure class of a worker's exit code (a negative code is a kill by signal)."""
    return {EXIT_OK: "finished", EXIT_PERMANENT: "permanent",
            EXIT_PREEMPTED: "preempted"}.get(exit_code, "transient")
