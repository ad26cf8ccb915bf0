"""The checkpoint manager's public face, in one process: save, resume, retention after the
commit, and what resuming refuses (another job's checkpoint, a changed model, world size or
recipe-state shape) or fixes (hyperparameters come from the spec, not the checkpoint)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from accelerate import Accelerator
from runjob import checkpoints, probe_spec, write_spec

from launcher.load import load_spec
from launcher.recipes.ppo import PPO
from launcher.runtime.checkpoint.manager import LoadFailed, Restored, checkpointer
from launcher.runtime.failures import PermanentError
from launcher.runtime.runlogs import RunLogs
from launcher.runtime.storage.volume import LocalVolume
from launcher.runtime.train.context import LoopContext


class Counter:
    """A recipe with a model, an optimizer and a state of its own, `envs` rows of it."""

    config_schema: ClassVar[dict[str, Any]] = {"properties": {
        "width": {"default": 8}, "lr": {"default": 0.05}, "envs": {"default": 2}}}
    model_fields: ClassVar[tuple[str, ...]] = ("width",)

    def __init__(self, config: dict[str, Any]) -> None:
        config = {"width": 8, "lr": 0.05, "envs": 2, **config}
        self.model = torch.nn.Linear(config["width"], 1)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config["lr"])
        self.envs = torch.zeros(config["envs"], 3)
        self.count = 0
        self.fail_load = False

    def setup(self, accelerator: Any) -> None:
        self.model, self.optimizer = accelerator.prepare(self.model, self.optimizer)

    def step(self) -> None:
        loss = self.model(torch.ones(4, self.model.in_features)).sum()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()

    def state_dict(self) -> dict[str, Any]:
        return {"count": torch.tensor(self.count), "envs": self.envs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.fail_load:
            raise RuntimeError("environment state does not fit")
        self.count = int(state["count"])
        self.envs = state["envs"]


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # train.config is checked against the probe recipe found here

    def make(volume: LocalVolume, keep_last: int = 2, name: str = "probe", processes: int = 1,
             recipe_cls: type = Counter, config: dict[str, Any] | None = None,
             reads_only: bool = False, **ref: str):
        spec_dict = probe_spec(checkpoint={"keep_last": keep_last}, train={"config": {}, **ref})
        spec_dict["name"] = name
        spec = load_spec(write_spec(tmp_path, spec_dict)).spec
        spec = type(spec).from_dict({**spec.to_dict(), "train": {**spec.to_dict()["train"],
                                                                  "config": config or {}}})
        recipe = recipe_cls(config or {}) if recipe_cls is Counter else recipe_cls(config or {}, 1)
        ctx = LoopContext(spec=spec, recipe=recipe, checkpoints=volume.path / name,
                          logs=RunLogs(tmp_path / "run", volume.path / name, "vol", kept_locally=True),
                          volume=volume, times={}, reads_only=reads_only)
        acc = Accelerator(cpu=True)
        recipe.setup(acc)
        manager = checkpointer(ctx, acc)
        if processes != 1:
            monkeypatch.setattr(manager, "acc", _Processes(acc, processes))
        return manager, recipe

    return make


class _Processes:
    """An Accelerator that reports another process count, as process 0 of them."""

    def __init__(self, acc: Accelerator, count: int) -> None:
        self.acc, self.num_processes, self.process_index = acc, count, 0

    def __getattr__(self, name: str) -> Any:  # the rest (load_state, ...) is the real one's
        return getattr(self.acc, name)


def volume_at(tmp_path: Path, name: str = "work") -> LocalVolume:
    return LocalVolume(tmp_path / "volume", tmp_path / name)


def test_a_saved_state_resumes_with_its_step_and_extra(manager, tmp_path: Path) -> None:
    volume = volume_at(tmp_path)
    first, recipe = manager(volume)
    recipe.count = 7
    objective = {"name": "val/loss", "mode": "min", "value": 0.5, "at": 3, "best": 0.25}
    first.save(3, {"objective": objective})
    assert (first.written, volume.commits) == (1, 1)  # committed by the manager itself

    second, fresh = manager(volume_at(tmp_path, "work-2"))
    restored = second.resume()
    assert restored == Restored(3, {"objective": objective, "job": "probe", "recipe": "probe_recipe:Probe",
                                    "train_config": {"width": 8, "lr": 0.05, "envs": 2},
                                    "model_config": {"width": 8}, "world_size": 1,
                                    "train": {"steps": 8, "seed": 0, "mixed_precision": "no",
                                              "gradient_accumulation_steps": 1, "log_every": 1,
                                              "tracker": "none", "validate_every": None}})
    assert fresh.count == 7
    assert torch.equal(fresh.model.weight, recipe.model.weight)


def test_nothing_to_resume_is_step_zero(manager, tmp_path: Path) -> None:
    fresh, _ = manager(volume_at(tmp_path))
    assert fresh.resume() == Restored(0, {})
    assert fresh.newest_step() is None


def test_checkpoints_live_in_the_job_s_own_folder(manager, tmp_path: Path) -> None:
    volume = volume_at(tmp_path)
    manager(volume, name="ppo")[0].save(2, {})
    manager(volume, name="ppo-multi-gpu")[0].save(5, {})
    assert checkpoints(tmp_path / "volume" / "ppo") == ["step-00000002"]
    assert checkpoints(tmp_path / "volume" / "ppo-multi-gpu") == ["step-00000005"]
    other, _ = manager(volume_at(tmp_path, "work-2"), name="ppo")
    assert other.resume().step == 2


def test_retention_keeps_keep_last_after_each_commit(manager, tmp_path: Path) -> None:
    volume = volume_at(tmp_path)
    saver, _ = manager(volume, keep_last=2)
    for step in (1, 2, 3):
        saver.save(step, {})
    assert checkpoints(volume.path / "probe") == ["step-00000002", "step-00000003"]
    assert saver.newest_step() == 3 and volume.commits == 3
    # retention after the last commit is committed with the next one (or the final commit)
    assert checkpoints(tmp_path / "volume" / "probe") == ["step-00000001", "step-00000002", "step-00000003"]
    volume.commit()
    assert checkpoints(tmp_path / "volume" / "probe") == ["step-00000002", "step-00000003"]


def test_a_changed_model_is_refused_as_permanent(manager, tmp_path: Path) -> None:
    manager(volume_at(tmp_path))[0].save(2, {})
    other, _ = manager(volume_at(tmp_path, "work-2"), config={"width": 4})
    with pytest.raises(PermanentError, match=r"^cannot resume from step-00000002: the model changed "
                                             r"\(train.config: width 8 -> 4\)"):
        other.resume()


def test_another_job_s_checkpoint_is_never_loaded(manager, tmp_path: Path) -> None:
    manager(volume_at(tmp_path), name="ppo")[0].save(2, {})
    (tmp_path / "volume" / "ppo").rename(tmp_path / "volume" / "probe")  # copied by hand, say
    other, recipe = manager(volume_at(tmp_path, "work-2"), name="probe")
    before = recipe.model.weight.clone()
    with pytest.raises(PermanentError, match=r"^cannot resume from step-00000002: it belongs to job "
                                             r"'ppo', not 'probe'; a checkpoint of another job is "
                                             r"never loaded: start this job from step 0 with --fresh"):
        other.resume()
    assert torch.equal(recipe.model.weight, before)


def test_a_job_name_reused_with_another_recipe_is_refused_and_offered_fresh(manager, tmp_path) -> None:
    manager(volume_at(tmp_path), recipe="probe_recipe:Probe")[0].save(2, {})
    other, recipe = manager(volume_at(tmp_path, "work-2"), recipe="launcher.recipes.ppo:PPO")
    before = recipe.model.weight.clone()
    with pytest.raises(PermanentError) as raised:
        other.resume()
    assert str(raised.value) == (
        "cannot resume from step-00000002: it belongs to recipe 'probe_recipe:Probe', not "
        "'launcher.recipes.ppo:PPO'; a checkpoint of another job is never loaded: start this job "
        "from step 0 with --fresh (with --local; it moves them aside), or rename it, or set "
        "checkpoint.resume: never, or use another checkpoint.volume")
    assert torch.equal(recipe.model.weight, before)


def test_a_changed_world_size_is_refused(manager, tmp_path: Path) -> None:
    manager(volume_at(tmp_path))[0].save(2, {})
    other, _ = manager(volume_at(tmp_path, "work-2"), processes=2)
    with pytest.raises(PermanentError) as raised:
        other.resume()
    assert str(raised.value) == (
        "cannot resume from step-00000002: it was written by 1 processes and this run has 2; "
        "each process resumes its own recipe state (its environments, its random streams), so the "
        "process count (compute.gpu_count x compute.nodes, or --processes) must stay 1, or set "
        "checkpoint.resume: never, or use another checkpoint.volume")


def test_evaluate_reads_a_checkpoint_whatever_process_count_wrote_it(manager, tmp_path: Path) -> None:
    manager(volume_at(tmp_path))[0].save(2, {})
    reader, _ = manager(volume_at(tmp_path, "work-2"), processes=2, reads_only=True)
    assert reader.resume().step == 2  # train's own resume with 2 processes is refused (above)


def test_recipe_state_of_another_shape_is_refused_naming_the_field(manager, tmp_path: Path) -> None:
    manager(volume_at(tmp_path))[0].save(2, {})
    other, recipe = manager(volume_at(tmp_path, "work-2"), config={"envs": 4})
    before = recipe.model.weight.clone()
    with pytest.raises(PermanentError) as raised:
        other.resume()
    assert str(raised.value) == (
        "cannot resume from step-00000002: the recipe's state has other shapes (envs: saved [2, 3], "
        "now [4, 3]): train.config changed (envs 2 -> 4); set checkpoint.resume: never, or use "
        "another checkpoint.volume")
    assert torch.equal(recipe.model.weight, before)  # refused before anything was loaded


def test_recipe_state_empty_until_training_fills_it_is_not_a_shape_change(manager, tmp_path: Path) -> None:
    saver, recipe = manager(volume_at(tmp_path))
    recipe.envs = torch.zeros(0, 3)  # e.g. an epoch's sample order, made at the first update
    saver.save(2, {})
    other, fresh = manager(volume_at(tmp_path, "work-2"))
    fresh.envs = torch.zeros(0, 3)
    assert other.resume().step == 2
    later, _ = manager(volume_at(tmp_path, "work-3"))  # now saved empty, built non-empty: loads too
    assert later.resume().step == 2


def test_a_load_that_fails_part_way_says_so_and_asks_for_a_rebuild(manager, tmp_path: Path, capsys) -> None:
    saver, _ = manager(volume_at(tmp_path))
    saver.save(2, {})
    saver.save(4, {})
    other, recipe = manager(volume_at(tmp_path, "work-2"))
    recipe.fail_load = True
    with pytest.raises(LoadFailed) as raised:
        other.resume()
    assert raised.value.step == 4
    line = inspect.getsourcelines(Counter.load_state_dict)[1] + 2  # the user's raise
    assert (f"warning: checkpoint step-00000004 skipped: loading it failed part-way "
            f"({__file__}:{line}: RuntimeError: environment state does not fit); the recipe is "
            "rebuilt before the previous one") in capsys.readouterr().err
    again, _ = manager(volume_at(tmp_path, "work-3"))
    assert again.resume(skip={4}).step == 2


def _lr(recipe: Any) -> float:
    return recipe.optimizer.param_groups[0]["lr"]


def test_hyperparameters_come_from_the_spec_and_moments_from_the_checkpoint(manager, tmp_path: Path,
                                                                             capsys) -> None:
    saver, recipe = manager(volume_at(tmp_path), config={"lr": 0.005})
    recipe.step()
    saver.save(1, {})
    moments = recipe.optimizer.state_dict()["state"][0]["exp_avg"].clone()

    resumed, fresh = manager(volume_at(tmp_path, "work-2"), config={"lr": 0.0001})
    resumed.resume()
    assert _lr(fresh) == 0.0001
    assert torch.equal(fresh.optimizer.state_dict()["state"][0]["exp_avg"], moments)
    assert "train.config changed since step-00000001: lr 0.005 -> 0.0001; the new values apply" \
        in capsys.readouterr().err


def test_ppo_learning_rate_from_the_spec_on_resume(manager, tmp_path: Path) -> None:
    small = {"num_envs": 2, "rollout_steps": 8, "hidden_sizes": [8], "num_minibatches": 2,
             "update_epochs": 1}
    saver, recipe = manager(volume_at(tmp_path), recipe_cls=PPO, recipe="launcher.recipes.ppo:PPO",
                            config={**small, "learning_rate": 0.005})
    recipe.train_step(0)
    saver.save(1, {})
    moments = recipe.optimizer.state_dict()["state"][0]["exp_avg"].clone()
    resumed, fresh = manager(volume_at(tmp_path, "work-2"), recipe_cls=PPO,
                             recipe="launcher.recipes.ppo:PPO", config={**small, "learning_rate": 0.0001})
    resumed.resume()
    assert _lr(fresh) == 0.0001
    assert torch.equal(fresh.optimizer.state_dict()["state"][0]["exp_avg"], moments)


def test_a_scheduler_keeps_its_place_with_the_new_base_rate() -> None:
    from launcher.runtime.checkpoint import hparams

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5 ** epoch)
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    saved = (optimizer.state_dict(), scheduler.state_dict())

    class Recipe:
        def __init__(self, lr: float) -> None:
            self.model = torch.nn.Linear(2, 1)
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda e: 0.5 ** e)

    fresh = Recipe(lr=0.02)
    built = hparams.capture(fresh)
    fresh.optimizer.load_state_dict(saved[0])
    fresh.scheduler.load_state_dict(saved[1])
    hparams.restore(built)
    assert fresh.optimizer.param_groups[0]["lr"] == pytest.approx(0.02 * 0.25)
    assert fresh.scheduler.base_lrs == [0.02]


def test_no_save_after_close(manager, tmp_path: Path) -> None:
    volume = volume_at(tmp_path)
    saver, _ = manager(volume)
    saver.save(1, {})
    saver.close()
    with pytest.raises(RuntimeError, match="the checkpoint manager is closed"):
        saver.save(2, {})
    assert checkpoints(volume.path / "probe") == ["step-00000001"]


def test_the_manifest_names_the_job_recipe_and_resolved_config(manager, tmp_path: Path) -> None:
    volume = volume_at(tmp_path)
    manager(volume, config={"lr": 0.01})[0].save(1, {})
    manifest = json.loads((tmp_path / "volume" / "probe" / "step-00000001" / "manifest.json").read_text())
    assert {k: manifest["extra"][k] for k in ("job", "recipe", "train_config")} == {
        "job": "probe", "recipe": "probe_recipe:Probe",
        "train_config": {"width": 8, "lr": 0.01, "envs": 2}}


# -- malformed manifests are skipped with a warning -------------------------------------------

def _rewrite_manifest(folder: Path, change: Any) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_a_manifest_nested_too_deep_is_skipped_with_a_warning(manager, tmp_path: Path, capsys) -> None:
    saver, _ = manager(volume_at(tmp_path))
    saver.save(1, {})
    saver.save(2, {})
    manifest = tmp_path / "volume" / "probe" / "step-00000002" / "manifest.json"
    text = manifest.read_text()
    manifest.write_text(text[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}")
    other, _ = manager(volume_at(tmp_path, "work-2"))
    assert other.newest_step() == 1
    assert other.resume().step == 1
    assert ("warning: checkpoint step-00000002 skipped: manifest.json is unreadable: RecursionError: "
            "maximum recursion depth exceeded") in capsys.readouterr().err


@pytest.mark.parametrize(("key", "value"), [
    ("train_config", "abc"), ("model_config", [1]), ("world_size", "2"), ("job", 5),
    ("best_return", "high"), ("train", "abc"), ("data_digest", 1.5), ("world_size", True),
    ("objective", 0.5)])
def test_a_field_of_the_wrong_type_in_extra_skips_the_checkpoint_with_a_warning(
        manager, tmp_path: Path, capsys, key: str, value: Any) -> None:
    saver, _ = manager(volume_at(tmp_path))
    saver.save(1, {})
    saver.save(2, {})
    _rewrite_manifest(tmp_path / "volume" / "probe" / "step-00000002",
                      lambda m: m["extra"].__setitem__(key, value))
    other, _ = manager(volume_at(tmp_path, "work-2"))
    assert other.resume().step == 1
    assert (f"warning: checkpoint step-00000002 skipped: manifest.json is malformed: extra.{key} is "
            f"{json.dumps(value)}; falling back to the previous one") in capsys.readouterr().err


def test_an_extra_that_is_not_a_mapping_skips_the_checkpoint(manager, tmp_path: Path, capsys) -> None:
    saver, _ = manager(volume_at(tmp_path))
    saver.save(1, {})
    saver.save(2, {})
    _rewrite_manifest(tmp_path / "volume" / "probe" / "step-00000002",
                      lambda m: m.__setitem__("extra", "abc"))
    other, _ = manager(volume_at(tmp_path, "work-2"))
    assert other.newest_step() == 1 and other.resume().step == 1
    assert ("warning: checkpoint step-00000002 skipped: manifest.json is not a format-1 manifest "
            "for step 2; falling back to the previous one") in capsys.readouterr().err


# -- every train.* change is reported on resume -------------------------------------------------

def test_a_changed_train_section_is_reported_on_resume(manager, tmp_path: Path, capsys) -> None:
    manager(volume_at(tmp_path))[0].save(2, {})
    other, _ = manager(volume_at(tmp_path, "work-2"), seed=7, mixed_precision="bf16",
                       gradient_accumulation_steps=4)
    assert other.resume().step == 2
    assert ('train changed since step-00000002: gradient_accumulation_steps 1 -> 4, '
            'mixed_precision "no" -> "bf16", seed 0 -> 7; the new values apply; the random streams '
            'continue from the checkpoint, so the new seed applies to a fresh start only'
            ) in capsys.readouterr().err



# -- recipe state that no resume could load --------------------------------------------------

class NumpyState(Counter):
    """Its state holds NumPy's global generator state, which a weights-only load refuses."""

    def __init__(self, config: dict[str, Any], seed: int | None = None) -> None:
        super().__init__(config)

    def state_dict(self) -> dict[str, Any]:
        import numpy as np

        return {**super().state_dict(), "numpy_rng": np.random.get_state()}


def test_recipe_state_that_cannot_be_reloaded_is_refused_at_the_first_save(manager, tmp_path: Path) -> None:
    volume = volume_at(tmp_path)
    saver, _ = manager(volume, recipe_cls=NumpyState)
    with pytest.raises(PermanentError) as raised:
        saver.save(1, {})
    line = inspect.getsourcelines(NumpyState.state_dict)[1]
    assert str(raised.value) == (
        f"{__file__}:{line}: NumpyState.state_dict() holds what torch.load(weights_only=True) "
        "refuses (Unsupported global: GLOBAL numpy._core.multiarray._reconstruct), so no checkpoint "
        "of it could ever be resumed; keep only tensors, numbers, strings, and lists, tuples and "
        "dicts of them in it (a NumPy array as torch.from_numpy(a), a random generator's state as a "
        "torch.Generator's)")
    assert checkpoints(volume.path / "probe") == [] and volume.commits == 0


def test_checkpoints_that_can_never_be_loaded_stop_the_run_and_stay(manager, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from launcher.runtime.checkpoint import manager as module

    volume = volume_at(tmp_path)
    with monkeypatch.context() as older:  # a launcher that did not check at the first save
        older.setattr(module, "reload_error", lambda state: None)
        saver, _ = manager(volume, recipe_cls=NumpyState)
        saver.save(1, {})
        saver.save(2, {})
    volume.commit()
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "volume" / "probe").iterdir()}
    other, _ = manager(volume_at(tmp_path, "work-2"), recipe_cls=NumpyState)
    with pytest.raises(PermanentError) as raised:
        other.resume()
    assert str(raised.value) == (
        "cannot resume from step-00000002: its recipe state holds what torch.load(weights_only=True) "
        "refuses (Unsupported global: GLOBAL numpy._core.multiarray._reconstruct), and so does every "
        "checkpoint written with it; in NumpyState.state_dict(), keep only tensors, numbers, strings, "
        "and lists, tuples and dicts of them in it (a NumPy array as torch.from_numpy(a), a random "
        "generator's state as a torch.Generator's); then start afresh (--fresh with --local, or "
        "checkpoint.resume: never: either sets these checkpoints aside, deleting none)")
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "volume" / "probe").iterdir()} == before


# -- a run never overwrites what it did not write -------------------------------------------------

def test_a_run_sets_aside_the_newer_checkpoints_it_fell_back_past(manager, tmp_path: Path, capsys) -> None:
    saver, _ = manager(volume_at(tmp_path), keep_last=3)
    saver.save(2, {})
    saver.save(4, {})
    _rewrite_manifest(tmp_path / "volume" / "probe" / "step-00000004",
                      lambda m: m["extra"].__setitem__("world_size", "x"))
    damaged = (tmp_path / "volume" / "probe" / "step-00000004" / "manifest.json").read_bytes()
    volume = volume_at(tmp_path, "work-2")
    resumed, _ = manager(volume, keep_last=3)
    assert resumed.resume().step == 2
    resumed.save(3, {})
    resumed.save(4, {})  # the step it fell back past: written anew, the old one kept aside
    [aside] = (tmp_path / "volume" / "probe" / "set-aside").iterdir()
    assert checkpoints(aside) == ["step-00000004"]
    assert (aside / "step-00000004" / "manifest.json").read_bytes() == damaged
    assert checkpoints(tmp_path / "volume" / "probe") == ["step-00000002", "step-00000003", "step-00000004"]
    assert (f"warning: this run trains from update 2: step-00000004 (not written by it) set aside in "
            f"vol:probe/set-aside/{aside.name}, none overwritten or deleted") in capsys.readouterr().err



def test_a_fresh_start_past_checkpoints_that_all_failed_says_so_and_sets_them_aside(
        manager, tmp_path: Path, capsys) -> None:
    saver, _ = manager(volume_at(tmp_path))
    for step in (1, 2):
        saver.save(step, {})
        _rewrite_manifest(tmp_path / "volume" / "probe" / f"step-{step:08d}",
                          lambda m: m["extra"].__setitem__("train_config", "abc"))
    fresh, _ = manager(volume_at(tmp_path, "work-2"))
    assert fresh.resume().step == 0
    assert ("no checkpoint could be loaded (2 skipped, see above): starting fresh; they are set "
            "aside at the first save, none overwritten or deleted") in capsys.readouterr().err
    fresh.save(1, {})
    [aside] = (tmp_path / "volume" / "probe" / "set-aside").iterdir()
    assert checkpoints(aside) == ["step-00000001", "step-00000002"]
