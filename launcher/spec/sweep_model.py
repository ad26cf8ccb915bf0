"""A sweep's search as frozen dataclasses: what `launcher.spec.sweep` checks and the coordinator
(launcher/runtime/sweep) runs.

Standard library only, as `launcher.spec.model`: the coordinator runs where jsonschema and YAML
are not imported.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

KINDS = ("log_uniform", "uniform", "int", "choice", "grid")
DEFAULT_TRIALS = 10
MAX_GRID = 10000  # values of one parameter that method grid lists


@dataclass(frozen=True)
class Parameter:
    path: str  # dotted, as --set takes it
    kind: str  # one of KINDS
    low: float | int | None = None  # log_uniform, uniform, int
    high: float | int | None = None
    step: float | int | None = None
    values: tuple[Any, ...] = ()  # choice, grid

    def candidates(self) -> tuple[Any, ...]:
        """The values a check applies to the job: both bounds of a range, every listed value."""
        return self.values if self.kind in ("choice", "grid") else (self.low, self.high)

    def grid_values(self) -> Sequence[Any] | None:
        """Every value, when the parameter is a finite list (grid, choice, a stepped int)."""
        if self.kind in ("choice", "grid"):
            return self.values
        if self.kind == "int":
            return range(int(self.low), int(self.high) + 1, int(self.step or 1))  # type: ignore[return-value,arg-type]
        return None

    def describe(self) -> str:
        if self.kind in ("choice", "grid"):
            return f"{self.kind} of {len(self.values)}: {', '.join(json.dumps(v) for v in self.values)}"
        step = f", step {self.step:g}" if self.step else ""
        name = {"log_uniform": "log-uniform", "uniform": "uniform", "int": "integer"}[self.kind]
        return f"{name} in [{self.low:g}, {self.high:g}]{step}"


@dataclass(frozen=True)
class Sweep:
    method: str  # grid | random | tpe
    trials: int
    parallel: int
    budget_usd: float | None
    early_stop: str  # none | median | hyperband
    seed: int
    metric: str
    direction: str  # min | max
    objective_from: str  # "sweep" or "recipe"
    parameters: tuple[Parameter, ...]

    def grid_size(self) -> int | None:
        sizes = [p.grid_values() for p in self.parameters]
        return None if any(s is None for s in sizes) else math.prod(len(s) for s in sizes)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for the coordinator's record."""
        data = {k: v for k, v in self.__dict__.items() if k != "parameters"}
        data["parameters"] = [{**p.__dict__, "values": list(p.values)} for p in self.parameters]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sweep:
        params = tuple(Parameter(**{**p, "values": tuple(p["values"])}) for p in data["parameters"])
        return cls(**{**data, "parameters": params})
