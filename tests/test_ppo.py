"""The PPO recipe: its config schema, its metrics, GAE, and bit-exact resumption."""

from __future__ import annotations

import copy
import dataclasses
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from accelerate import Accelerator
from jsonschema import Draft202012Validator

from launcher.recipes.ppo import PPO, PPOConfig, gae
from launcher.runtime.recipe.protocol import Recipe

# Small enough that a few updates take well under a second.
SMALL = {
    "num_envs": 4,
    "rollout_steps": 32,
    "hidden_sizes": [16, 16],
    "update_epochs": 2,
    "num_minibatches": 2,
}
METRIC_KEYS = {"return_mean100", "episodes", "env_steps", "loss", "policy_loss", "value_loss", "entropy"}


def make(seed: int, config: dict[str, Any] = SMALL) -> PPO:
    recipe = PPO(config, seed)
    recipe.setup(Accelerator(cpu=True))
    return recipe


def params(recipe: PPO) -> list[torch.Tensor]:
    return [p.detach().clone() for p in recipe.model.parameters()]


def assert_same_params(a: PPO, b: PPO) -> None:
    pa, pb = params(a), params(b)
    assert len(pa) == len(pb)
    assert all(torch.equal(x, y) for x, y in zip(pa, pb))


def test_is_a_recipe() -> None:
    assert isinstance(PPO(SMALL, 0), Recipe)
    assert set(PPO.model_fields) <= set(PPO.config_schema["properties"])


def test_config_schema_is_valid_closed_and_documented() -> None:
    schema = PPO.config_schema
    Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    for name, prop in schema["properties"].items():
        assert prop.get("description"), name
        assert "default" in prop, name
    defaults = {name: prop["default"] for name, prop in schema["properties"].items()}
    validator = Draft202012Validator(schema)
    assert list(validator.iter_errors(defaults)) == []
    assert list(validator.iter_errors({})) == []
    assert not validator.is_valid({"num_env": 8})
    # The config dataclass and the schema name the same keys.
    assert {f.name for f in dataclasses.fields(PPOConfig)} == set(schema["properties"])


def test_unknown_config_key_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown PPO config keys: num_env"):
        PPO({"num_env": 8}, 0)


def test_train_step_returns_finite_metrics() -> None:
    recipe = make(0)
    for step in range(3):
        metrics = recipe.train_step(step)
    assert METRIC_KEYS <= set(metrics)
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert metrics["env_steps"] == 3 * 4 * 32
    # A random policy drops the pole within ~20 steps, so episodes have finished by now.
    assert metrics["episodes"] > 0
    assert metrics["return_mean100"] > 0


def test_rollout_final_obs_is_the_next_obs_unless_the_episode_ended() -> None:
    recipe = make(0)
    rollout = recipe._collect()
    following = torch.cat([rollout.obs[1:], recipe.obs.unsqueeze(0)])
    going_on = ~rollout.done
    assert rollout.done.any()
    assert torch.equal(rollout.final_obs[going_on], following[going_on])
    assert not torch.equal(rollout.final_obs[rollout.done], following[rollout.done])


def test_gae_bootstraps_on_truncation_not_on_termination() -> None:
    gamma, lam = 0.5, 0.5  # gamma * lam = 0.25
    # Three envs over three steps; each row below is one env, transposed to (T, N).
    rewards = torch.ones(3, 3)
    values = torch.tensor([[1.0, 3.0, 3.0], [1.0, 2.0, 2.0], [1.0, 2.0, 2.0]]).T
    next_values = torch.tensor([[3.0, 10.0, 6.0], [8.0, 2.0, 4.0], [100.0, 2.0, 4.0]]).T
    terminated = torch.tensor([[False, True, False], [False, False, False], [True, False, False]]).T
    truncated = torch.tensor([[False, False, False], [True, False, False], [True, False, False]]).T
    adv = gae(rewards, values, next_values, terminated, terminated | truncated, gamma, lam)
    # env 0, terminated at t=1: deltas 1+0.5*3-1=1.5, 1+0-3=-2, 1+0.5*6-3=1;
    #   A2=1, A1=-2 (the episode ended, nothing flows back from A2), A0=1.5+0.25*(-2)=1.
    # env 1, truncated at t=0: delta0 = 1+0.5*8-1 = 4 bootstraps from the final obs, A0 = 4;
    #   deltas 1+1-2=0 and 1+2-2=1 give A2=1, A1=0+0.25*1=0.25.
    # env 2, terminated and truncated at t=0: termination wins, delta0 = 1-1 = 0.
    expected = torch.tensor([[1.0, -2.0, 1.0], [4.0, 0.25, 1.0], [0.0, 0.25, 1.0]]).T
    torch.testing.assert_close(adv, expected)


def test_same_seed_same_run_other_seed_other_run() -> None:
    a, b, c = make(1), make(1), make(2)
    for step in range(2):
        ma, mb, mc = a.train_step(step), b.train_step(step), c.train_step(step)
    assert ma == mb
    assert_same_params(a, b)
    assert ma != mc


def assert_equal_states(a: Any, b: Any) -> None:
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_equal_states(a[key], b[key])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_equal_states(x, y)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b


def snapshot(recipe: PPO) -> tuple[dict[str, Any], ...]:
    return tuple(
        copy.deepcopy(x.state_dict()) for x in (recipe.model, recipe.optimizer, recipe)
    )


def test_resume_from_state_dicts_is_bit_identical() -> None:
    original = make(1)
    for step in range(2):
        original.train_step(step)
    saved = snapshot(original)
    expected = [original.train_step(step) for step in range(2, 4)]

    resumed = make(7)  # another seed: everything that matters must come from the state
    for target, state in zip((resumed.model, resumed.optimizer, resumed), saved):
        target.load_state_dict(state)
    assert [resumed.train_step(step) for step in range(2, 4)] == expected
    assert_same_params(original, resumed)
    assert_equal_states(original.state_dict(), resumed.state_dict())


def test_resume_through_accelerate_save_state_is_bit_identical(tmp_path: Path) -> None:
    original = make(1)
    original.accelerator.register_for_checkpointing(original)
    original.train_step(0)
    original.accelerator.save_state(str(tmp_path))
    expected = original.train_step(1)

    resumed = make(7)
    resumed.accelerator.register_for_checkpointing(resumed)
    resumed.accelerator.load_state(str(tmp_path))
    assert resumed.train_step(1) == expected
    assert_same_params(original, resumed)


def test_state_dict_loads_with_weights_only(tmp_path: Path) -> None:
    # The runtime saves the recipe's state per process and loads it with weights_only=True.
    recipe = make(0)
    recipe.train_step(0)
    torch.save(recipe.state_dict(), tmp_path / "recipe.pt")
    assert_equal_states(torch.load(tmp_path / "recipe.pt", weights_only=True), recipe.state_dict())


# Runs under torchrun with two processes (DDP over gloo): trains, snapshots, continues, then
# resumes a second recipe from the snapshot, and saves what the test compares.
DDP_WORKER = textwrap.dedent(
    """
    import copy, sys
    import torch
    from accelerate import Accelerator
    from launcher.recipes.ppo import PPO

    config = {"num_envs": 4, "rollout_steps": 32, "hidden_sizes": [16, 16]}
    acc = Accelerator(cpu=True)
    flat = lambda r: torch.cat([p.detach().flatten() for p in r.model.parameters()])
    a = PPO(config, 3)
    a.setup(acc)
    for step in range(2):
        a.train_step(step)
    model = copy.deepcopy(acc.unwrap_model(a.model).state_dict())
    optimizer = copy.deepcopy(a.optimizer.state_dict())
    recipe = copy.deepcopy(a.state_dict())
    expected = a.train_step(2)
    b = PPO(config, 9)
    b.setup(acc)
    acc.unwrap_model(b.model).load_state_dict(model)
    b.optimizer.load_state_dict(optimizer)
    b.load_state_dict(recipe)
    got = b.train_step(2)
    torch.save(
        {"params": flat(a), "resumed": flat(b), "expected": expected, "got": got, "obs": a.obs},
        f"{sys.argv[1]}/rank{acc.process_index}.pt",
    )
    """
)


def test_two_processes_keep_parameters_in_sync_and_resume_bit_identically(tmp_path: Path) -> None:
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run([*command, str(worker), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{i}.pt") for i in (0, 1))
    # DDP averaged the gradients: identical parameters; each process ran its own environments.
    assert torch.equal(rank0["params"], rank1["params"])
    assert not torch.equal(rank0["obs"], rank1["obs"])
    for rank in (rank0, rank1):
        assert rank["got"] == rank["expected"]
        assert torch.equal(rank["resumed"], rank["params"])
