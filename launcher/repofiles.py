"""What a spec reads from its repository, checked where the repository is known: the Dockerfile
and a stage's declared inputs must exist and, symbolic links followed, stay inside it.

The spec's own rules refuse paths that leave the repository as written (`..`, absolute); this
catches the rest (a link out of it) and what is missing, before anything is built or run.
"""

from __future__ import annotations

from pathlib import Path

from launcher.errors import Problem, SpecError
from launcher.spec.model import JobSpec
from launcher.spec.yamlpos import Document


def inside(root: Path, path: Path) -> bool:
    """Whether `path`, links followed, is `root` or lies below it."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a loop of links leads nowhere inside
        return False


def input_problems(doc: Document, spec: JobSpec, root: Path) -> list[Problem]:
    """Each stage's declared input that is missing from the repository or leads out of it."""
    problems = []
    for stage in spec.stages:
        for i, item in enumerate(stage.inputs):
            where = ("stages", stage.name, "inputs", i)
            path = root / item
            if not inside(root, path):
                why = f"{item!r} leads out of the repository ({root}) through a symbolic link"
            elif not path.exists():
                why = f"{item!r} is not in the repository ({root})"
            else:
                continue
            problems.append(Problem(doc.where(where), f"$.stages.{stage.name}.inputs[{i}]",
                                    f"{why}; inputs are files and folders relative to its root"))
    return problems


def require_inputs(doc: Document, spec: JobSpec, root: Path) -> None:
    problems = input_problems(doc, spec, root)
    if problems:
        raise SpecError(problems)
