"""What a spec's pipeline asks of Modal, derived once for the app, the plan and `check`.

The driver (a small CPU function that calls each stage in turn) must outlive its stages. Its
own clock runs while a stage starts up, which Modal keeps out of the stage's timeout: start-up
has its own limit (`startup_timeout`, which the app leaves to its default, the timeout). So
the driver's timeout is, for each stage, every attempt's start-up limit plus its timeout,
with the delays between attempts, and a margin for the driver's own work. Time an input waits
in Modal's queue for capacity counts against no limit: no timeout covers it. Modal limits one
attempt of a function to 24 h, so past that the driver's timeout is capped and the plan says
what happens then.
"""

from __future__ import annotations

from dataclasses import dataclass

from launcher.errors import RunError
from launcher.spec.model import Compute, JobSpec, Retries

MODAL_MAX_TIMEOUT_S = 86400  # Modal's limit on one attempt of a function
DRIVER_MARGIN_S = 300  # the driver's own start-up, reloads and commits between stages


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
        return int(self.compute.timeout_s * self.attempts + self.delays_s)

    @property
    def delays_s(self) -> float:
        return sum(self.retries.delay(n) for n in range(1, self.attempts))

    @property
    def startup_s(self) -> int:
        """Modal's start-up limit of one attempt: the timeout (the app sets no startup_timeout)."""
        return self.compute.timeout_s

    @property
    def bound_s(self) -> int:
        """The longest the driver waits for this stage within Modal's limits: every attempt
        starting up to its limit and running to its timeout, with the delays between them."""
        return int((self.startup_s + self.compute.timeout_s) * self.attempts + self.delays_s)


def steps(spec: JobSpec) -> list[Step]:
    """The stages in the order they run, train included."""
    found = {s.name: Step(s.name, s.compute, s.retries) for s in spec.stages}
    found["train"] = Step("train", spec.compute, spec.retries)
    return [found[name] for name in spec.pipeline]


def longest_s(spec: JobSpec) -> int:
    """How long the stages can take together, every attempt running to its timeout."""
    return sum(step.longest_s for step in steps(spec))


def bound_s(spec: JobSpec) -> int:
    """How long the driver may wait for its stages while each is within its limits."""
    return sum(step.bound_s for step in steps(spec)) + DRIVER_MARGIN_S


def driver_timeout_s(spec: JobSpec) -> int:
    return min(bound_s(spec), MODAL_MAX_TIMEOUT_S)


def check_rerun(source: str, spec: JobSpec, rerun: tuple[str, ...]) -> None:
    """`--rerun STAGE` names a stage the spec has."""
    for name in rerun:
        if spec.stage(name) is None:
            raise RunError(f"{source}: --rerun {name}: the spec has no stages.{name}")
