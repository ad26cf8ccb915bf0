"""From a spec path (and `--set` flags) to a validated JobSpec, in one call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from launcher import gitinfo
from launcher.errors import Problem
from launcher.spec.compose import compose
from launcher.spec.model import JobSpec
from launcher.spec.refs import use_root
from launcher.spec.sweep import Sweep, check_sweep, is_sweep
from launcher.spec.validate import check
from launcher.spec.yamlpos import Document


@dataclass(frozen=True)
class Loaded:
    path: Path
    source: str  # the path as the user wrote it: what every message names
    doc: Document  # the composed document, with where each value came from
    spec: JobSpec
    warnings: list[Problem]  # valid, but will not do what it says
    sweep: Sweep | None = None  # a sweep spec's search (the spec is then its trials' job)


def load_spec(path: str | Path, sets: tuple[str, ...] = ()) -> Loaded:
    doc = compose(Path(path), tuple(sets), display=str(path))
    # The recipe's module is found from the repository's root, from any folder (outside git,
    # from the working directory, as find_repo has it).
    use_root(gitinfo.nearest_work_tree(Path(path).resolve()) or Path.cwd())
    checked = check(doc)
    sweep = check_sweep(doc, checked.spec.train.recipe) if is_sweep(doc) else None
    return Loaded(Path(path), str(path), doc, checked.spec, checked.warnings, sweep)
