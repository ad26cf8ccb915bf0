"""The sweep's budget: spend estimated from the plan's prices, and whether a trial may start.

Spend is an estimate: each trial's wall time at the price of the job's GPUs (launcher/data/
prices.json), as the plan prices a run, never a bill. A trial may start only when the spend so
far, the worst case still ahead of the running trials (their worst case less what they spent),
the new trial's worst case and what is reserved for later (evaluate, once) fit the budget.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    limit_usd: float | None  # None: no budget
    per_hour_usd: float  # one trial running, all its GPUs
    trial_worst_usd: float  # one trial's worst case
    reserved_usd: float = 0.0  # stages still to run once (evaluate), at their worst case

    def spent(self, seconds: float) -> float:
        return self.per_hour_usd * seconds / 3600

    def remaining(self, seconds: float) -> float:
        """A running trial's worst case still ahead after `seconds` of it."""
        return max(self.trial_worst_usd - self.spent(seconds), 0.0)

    def allows(self, finished_s: float, running_s: list[float]) -> bool:
        """Whether a new trial may start: `finished_s`, the seconds of every trial that ended;
        `running_s`, each running trial's seconds so far."""
        if self.limit_usd is None:
            return True
        committed = (self.spent(finished_s) + sum(self.spent(s) + self.remaining(s) for s in running_s)
                     + self.trial_worst_usd + self.reserved_usd)
        return committed <= self.limit_usd
