"""Validate a composed document: the steps in order, every problem collected and reported at once.

    version  ->  integers, shorthand  ->  schema  ->  defaults  ->  rules  ->  configs  ->  JobSpec

Each step is its own module: normalise (integers, shorthand, defaults, JobSpec fields), schema
(the JSON Schema and its validator), explain_errors (jsonschema errors as located Problems),
rules (what a schema cannot say), recipe_config (train.config against the recipe's schema),
stage_config (each stage's function found in its source, its config against its schema).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from launcher.errors import Problem, SpecError
from launcher.spec import normalise, rules
from launcher.spec.explain_errors import schema_problems
from launcher.spec.model import JobSpec
from launcher.spec.recipe_config import checked_config
from launcher.spec.rules import RECIPE_REF  # launch init checks --recipe with it too
from launcher.spec.schema import job_schema
from launcher.spec.stage_config import checked_stage_configs
from launcher.spec.yamlpos import Document, json_path


@dataclass(frozen=True)
class Checked:
    spec: JobSpec
    warnings: list[Problem]  # valid, but will not do what it says


def _sort_key(problem: Problem) -> tuple[str, int, int, str]:
    loc = problem.location
    return (loc.source, loc.line or 0, loc.col or 0, problem.message)


def _recipe_checkable(raw: dict[str, Any]) -> bool:
    """train.recipe and train.config are well-formed, so the recipe can be looked up (when not,
    the schema says why)."""
    train = raw.get("train")
    return (isinstance(train, dict) and isinstance(train.get("recipe"), str)
            and RECIPE_REF.match(train["recipe"]) is not None and isinstance(train.get("config"), dict))


def _checkable_stages(raw: dict[str, Any]) -> dict[str, Any]:
    """The stages whose `run` and `config` are well-formed (the schema reports the others)."""
    stages = raw.get("stages")
    return {name: s for name, s in stages.items()
            if isinstance(s, dict) and isinstance(s.get("run"), str)
            and RECIPE_REF.match(s["run"]) is not None and isinstance(s.get("config"), dict)
            } if isinstance(stages, dict) else {}


def _checked_code(raw: dict[str, Any], doc: Document) -> list[Problem]:
    """The recipe's and the stages' references and configs: their problems; `raw`'s configs
    are replaced by their normalised forms."""
    problems: list[Problem] = []
    if _recipe_checkable(raw):
        raw["train"]["config"], found = checked_config(raw, doc)
        problems += found
    stage_configs, found = checked_stage_configs({**raw, "stages": _checkable_stages(raw)}, doc)
    for name, stage_config in stage_configs.items():
        raw["stages"][name]["config"] = stage_config
    return problems + found


def check(doc: Document, check_recipe: bool = True) -> Checked:
    """The JobSpec for a composed document with its warnings, or a SpecError listing every problem."""
    raw = normalise.expand(doc.value)
    version = rules.version_problem(raw, doc)
    if version is not None:
        raise SpecError([version])
    problems = schema_problems(job_schema(), raw, doc)
    raw = normalise.with_defaults(raw)
    problems += rules.problems(raw, doc)
    if check_recipe:  # with the schema's problems, so that one round of check shows them all
        problems += _checked_code(raw, doc)
    if problems:
        raise SpecError(sorted(set(problems), key=_sort_key))
    spec = JobSpec.from_dict(normalise.fields(raw))
    warnings = [Problem(doc.where(path), json_path(path), message)
                for path, message in rules.warnings(spec)]
    return Checked(spec, warnings)


def validate(doc: Document, check_recipe: bool = True) -> JobSpec:
    """The JobSpec for a composed document, or a SpecError listing every problem."""
    return check(doc, check_recipe).spec
