"""Validate a composed document: the steps in order, every problem collected and reported at once.

    version  ->  integers, shorthand  ->  schema  ->  defaults  ->  rules  ->  configs  ->  JobSpec

Each step is its own module: normalise (integers, shorthand, defaults, JobSpec fields), schema
(the JSON Schema and its validator), explain_errors (jsonschema errors as located Problems),
rules (what a schema cannot say), recipe_config (train.config against the recipe's schema),
stage_config (each stage's function found in its source, its config against its schema).
"""

from __future__ import annotations

from dataclasses import dataclass

from launcher.errors import Problem, SpecError
from launcher.spec import normalise, rules
from launcher.spec.explain_errors import schema_problems
from launcher.spec.model import JobSpec
from launcher.spec.recipe_config import checked_config
from launcher.spec.rules import RECIPE_REF  # noqa: F401  (launch init checks --recipe with it)
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


def check(doc: Document, check_recipe: bool = True) -> Checked:
    """The JobSpec for a composed document with its warnings, or a SpecError listing every problem."""
    raw = normalise.expand(doc.value)
    version = rules.version_problem(raw, doc)
    if version is not None:
        raise SpecError([version])
    problems = schema_problems(job_schema(), raw, doc)
    raw = normalise.with_defaults(raw)
    problems += rules.problems(raw, doc)
    if not problems and check_recipe:
        config, config_problems = checked_config(raw, doc)
        raw["train"]["config"] = config
        problems += config_problems
        stage_configs, stage_problems = checked_stage_configs(raw, doc)
        for name, stage_config in stage_configs.items():
            raw["stages"][name]["config"] = stage_config
        problems += stage_problems
    if problems:
        raise SpecError(sorted(set(problems), key=_sort_key))
    spec = JobSpec.from_dict(normalise.fields(raw))
    warnings = [Problem(doc.where(path), json_path(path), message)
                for path, message in rules.warnings(spec)]
    return Checked(spec, warnings)


def validate(doc: Document, check_recipe: bool = True) -> JobSpec:
    """The JobSpec for a composed document, or a SpecError listing every problem."""
    return check(doc, check_recipe).spec
