"""What a spec's pipeline asks of Modal, derived once for the app, the plan and `check`.

The driver (a small CPU function that calls each stage in turn) must outlive its stages, so
its timeout is what the stages can take at most: each stage's timeout times its attempts,
plus the delays between them. Modal limits one attempt of a function to 24 h, so past that
the driver's timeout is capped and the plan says what happens then.
"""

from __future__ import annotations

from dataclasses import dataclass

from launcher.errors import RunError
from launcher.spec.model import Compute, JobSpec, Retries

MODAL_MAX_TIMEOUT_S = 86400  # Modal's limit on one attempt of a function


@dataclass(frozen=True)
class Step:
    """One stage as the driver sees it: its hardware, timeout and retries."""

    name: str  # prepare | train | evaluate
    compute: Compute
    retries: Retries

    @property
    def attempts(self) -> int:
        return 1 + self.retries.max_retries

    @property
    def longest_s(self) -> int:
        """Every attempt running to its timeout, with the delays between them."""
        delays = sum(self.retries.delay(n) for n in range(1, self.attempts))
        return int(self.compute.timeout_s * self.attempts + delays)


def steps(spec: JobSpec) -> list[Step]:
    """The stages in the order they run, train included."""
    found = {s.name: Step(s.name, s.compute, s.retries) for s in spec.stages}
    found["train"] = Step("train", spec.compute, spec.retries)
    return [found[name] for name in spec.pipeline]


def longest_s(spec: JobSpec) -> int:
    """How long the stages can take together, every attempt running to its timeout."""
    return sum(step.longest_s for step in steps(spec))


def driver_timeout_s(spec: JobSpec) -> int:
    return min(longest_s(spec), MODAL_MAX_TIMEOUT_S)


def check_rerun(source: str, spec: JobSpec, rerun: tuple[str, ...]) -> None:
    """`--rerun STAGE` names a stage the spec has."""
    for name in rerun:
        if spec.stage(name) is None:
            raise RunError(f"{source}: --rerun {name}: the spec has no stages.{name}")
