"""The batched CartPole agrees with gymnasium's CartPole-v1 step for step."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from launcher.recipes.cartpole import MAX_EPISODE_STEPS, CartPoleBatch

NUM_ENVS = 8


def balancing_action(state: np.ndarray) -> int:
    """A linear controller that keeps the pole up for the full 500 steps, to reach truncation."""
    x, x_dot, theta, theta_dot = state
    return int(0.05 * x + 0.3 * x_dot + 5.0 * theta + theta_dot > 0)


def make_gym_envs(ours: CartPoleBatch) -> list[gym.Env]:
    envs = []
    for i in range(ours.num_envs):
        env = gym.make("CartPole-v1")  # with TimeLimit(500), which gives truncation
        env.reset(seed=i)
        env.unwrapped.state = ours.state[i].numpy().copy()
        envs.append(env)
    return envs


def test_matches_gymnasium_through_terminations_and_truncations() -> None:
    ours = CartPoleBatch(NUM_ENVS, seed=0)
    theirs = make_gym_envs(ours)
    rng = np.random.default_rng(0)
    terminations = truncations = 0
    for _ in range(1500):
        states = ours.state.numpy().copy()
        # The first half mostly balance (and so run into the time limit), the rest act at random.
        actions = np.array(
            [
                balancing_action(states[i]) if i < NUM_ENVS // 2 and rng.random() > 0.1 else rng.integers(2)
                for i in range(NUM_ENVS)
            ]
        )
        result = ours.step(torch.from_numpy(actions))
        for i, env in enumerate(theirs):
            obs, reward, terminated, truncated, _ = env.step(int(actions[i]))
            np.testing.assert_allclose(result.final_obs[i].numpy(), obs, rtol=1e-6, atol=1e-6)
            assert result.final_obs.dtype == torch.float32
            assert result.reward[i].item() == reward == 1.0
            assert result.terminated[i].item() == terminated
            assert result.truncated[i].item() == truncated
            if terminated or truncated:
                terminations += terminated
                truncations += truncated
                # Continue gymnasium's env from the state ours auto-reset to.
                env.reset()
                env.unwrapped.state = ours.state[i].numpy().copy()
            else:
                np.testing.assert_array_equal(result.obs[i].numpy(), result.final_obs[i].numpy())
    assert terminations > 50
    assert truncations >= 4


def test_truncates_after_exactly_500_steps() -> None:
    ours = CartPoleBatch(1, seed=0)
    for t in range(1, MAX_EPISODE_STEPS + 1):
        result = ours.step(torch.tensor([balancing_action(ours.state[0].numpy())]))
        assert not result.terminated.item()
        assert result.truncated.item() == (t == MAX_EPISODE_STEPS)
    assert ours.elapsed.item() == 0


def test_reset_states_are_uniform_in_bounds_and_auto_reset_replaces_the_obs() -> None:
    ours = CartPoleBatch(256, seed=3)
    assert ours.state.abs().max().item() <= 0.05
    # Pushing right forever terminates every episode within a few dozen steps.
    push = torch.ones(256, dtype=torch.int64)
    for _ in range(100):
        result = ours.step(push)
        done = result.terminated | result.truncated
        if done.any():
            assert result.obs[done].abs().max().item() <= 0.05
            assert result.final_obs[done].abs().max().item() > 0.05
            return
    pytest.fail("no episode terminated")


def test_same_seed_same_episodes_and_state_dict_round_trip() -> None:
    a, b = CartPoleBatch(16, seed=7), CartPoleBatch(16, seed=7)
    torch.testing.assert_close(a.state, b.state, rtol=0, atol=0)
    actions = torch.Generator().manual_seed(0)
    for _ in range(40):
        a.step(torch.randint(2, (16,), generator=actions))
    snapshot = copy.deepcopy(a.state_dict())
    restored = CartPoleBatch(16, seed=99)
    restored.load_state_dict(snapshot)
    for _ in range(200):
        action = torch.randint(2, (16,), generator=actions)
        ra, rb = a.step(action), restored.step(action)
        for x, y in zip(ra, rb):
            assert torch.equal(x, y)


def test_load_state_dict_refuses_another_batch_size() -> None:
    with pytest.raises(ValueError, match=r"expected \(4, 4\)"):
        CartPoleBatch(4, seed=0).load_state_dict(CartPoleBatch(8, seed=0).state_dict())
