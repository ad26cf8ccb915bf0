"""The resume policy on plain dicts: a manifest's `extra` and what this run is in, a verdict
out. No torch, no files: the module imports neither, and these tests need neither."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from launcher.runtime.checkpoint import resume_policy as policy
from launcher.runtime.checkpoint.resume_policy import Refuse, Run, Skip, Usable
from launcher.spec.model import Train


class Recipe:
    config_schema: ClassVar[dict[str, Any]] = {"properties": {
        "width": {"default": 8}, "lr": {"default": 0.05}, "envs": {"default": 2}}}
    model_fields: ClassVar[tuple[str, ...]] = ("width",)


def spec(config: dict[str, Any] | None = None, seed: int = 1, name: str = "probe") -> Any:
    train = Train(recipe="probe_recipe:Probe", steps=8, seed=seed, mixed_precision="no",
                  gradient_accumulation_steps=1, log_every=1, tracker="none", config=config or {})
    return SimpleNamespace(name=name, train=train)


def run(world_size: int | None = 1, data: tuple[bool, str | None] = (False, None), **kw: Any) -> Run:
    return Run.of(spec(**kw), Recipe, world_size, data)


def saved(**changes: Any) -> dict[str, Any]:
    """The `extra` this run's own save records, with `changes`."""
    return {**policy.identity(run()), "world_size": 1, **changes}


def test_the_module_imports_no_torch() -> None:
    code = ("import sys; import launcher.runtime.checkpoint.resume_policy, "
            "launcher.runtime.checkpoint.publisher; "
            "sys.exit('torch' in sys.modules or 'accelerate' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_run_looks_for_a_checkpoint_only_when_asked_and_auto() -> None:
    assert policy.resumes(True, "auto")
    assert not policy.resumes(False, "auto") and not policy.resumes(True, "never")


def test_the_run_fills_in_the_recipe_s_defaults_and_names_its_model_fields() -> None:
    here = run(config={"lr": 0.1})
    assert here.train_config == {"width": 8, "lr": 0.1, "envs": 2}
    assert here.model_config == {"width": 8}
    assert here.train["seed"] == 1 and "recipe" not in here.train and "config" not in here.train


def test_its_own_checkpoint_is_usable_and_one_from_before_manifests_named_the_job_too() -> None:
    assert policy.judge("step-00000002", 2, saved(), run()) == Usable()
    older = {k: v for k, v in saved().items() if k not in ("job", "recipe", "world_size", "train")}
    assert policy.judge("step-00000002", 2, older, run()) == Usable()


@pytest.mark.parametrize(("key", "value"), [
    ("best_return", "high"), ("train", "abc"), ("data_digest", 1.5), ("world_size", True)])
def test_a_malformed_manifest_is_skipped_not_refused(key: str, value: Any) -> None:
    verdict = policy.judge("step-00000002", 2, saved(**{key: value}), run())
    assert isinstance(verdict, Skip) and verdict.reason.startswith(
        f"manifest.json is malformed: extra.{key} is ")


def test_another_job_or_recipe_is_refused_and_offered_a_fresh_start() -> None:
    verdict = policy.judge("step-00000002", 2, saved(job="other"), run())
    assert verdict == Refuse("cannot resume from step-00000002: it belongs to job 'other', not "
                             f"'probe'; a checkpoint of another job is never loaded: {policy.FRESH}")
    assert isinstance(policy.judge("s", 2, saved(recipe="x:Y"), run()), Refuse)


def test_another_world_size_is_refused_unless_the_run_only_reads() -> None:
    verdict = policy.judge("step-00000002", 2, saved(world_size=2), run())
    assert isinstance(verdict, Refuse) and "written by 2 processes and this run has 1" in verdict.reason
    assert policy.judge("step-00000002", 2, saved(world_size=2), run(world_size=None)) == Usable()


def test_a_changed_model_is_refused_naming_the_field() -> None:
    verdict = policy.judge("step-00000002", 2, saved(), run(config={"width": 4}))
    assert verdict == Refuse("cannot resume from step-00000002: the model changed (train.config: "
                             f"width 8 -> 4); {policy.NEVER}")


def test_other_prepared_data_is_refused_only_where_data_is_checked() -> None:
    mine = run(data=(True, "new"))
    verdict = policy.judge("step-00000003", 3, saved(data_digest="old"), mine)
    assert isinstance(verdict, Refuse) and "trained on data from prepare old" in verdict.reason
    assert policy.judge("step-00000003", 3, saved(data_digest="new"), mine) == Usable()
    assert policy.judge("step-00000003", 3, saved(data_digest="old"), run()) == Usable()
    assert policy.identity(mine)["data_digest"] == "new" and "data_digest" not in policy.identity(run())


def test_other_shapes_are_refused_with_the_config_change_that_explains_them() -> None:
    extra = saved()
    assert policy.shapes_refusal("s", {"envs": [2, 3]}, {"envs": [2, 3]}, extra, run()) is None
    assert policy.shapes_refusal("s", {"envs": [0]}, {"envs": [4]}, extra, run()) is None  # empty
    refusal = policy.shapes_refusal("s", {"envs": [2, 3]}, {"envs": [4, 3]}, extra,
                                    run(config={"envs": 4}))
    assert refusal == ("cannot resume from s: the recipe's state has other shapes (envs: saved "
                       f"[2, 3], now [4, 3]): train.config changed (envs 2 -> 4); {policy.NEVER}")


def test_what_changed_since_a_checkpoint_is_noted_and_a_new_seed_explained() -> None:
    extra = saved()
    assert policy.config_note("s", extra, run()) is None and policy.train_note("s", extra, run()) is None
    assert policy.config_note("s", extra, run(config={"lr": 0.1})) == (
        "train.config changed since s: lr 0.05 -> 0.1; the new values apply (the optimizer keeps "
        "its state, with the spec's hyperparameters)")
    note = policy.train_note("s", extra, run(seed=2))
    assert note is not None and note.startswith("train changed since s: seed 1 -> 2;")
    assert "new seed applies to a fresh start only" in note
    assert policy.train_note("s", {}, run(seed=2)) is None  # made before manifests recorded it


def test_nothing_loaded_says_whether_checkpoints_were_skipped() -> None:
    assert policy.nothing_loaded(0) == "no checkpoint: starting fresh"
    assert policy.nothing_loaded(2).startswith("no checkpoint could be loaded (2 skipped")
