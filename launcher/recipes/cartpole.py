"""CartPole-v1 as a batch of environments in torch tensors.

The dynamics, constants, rewards, thresholds and the 500-step time limit are gymnasium's
(``gymnasium.envs.classic_control.cartpole.CartPoleEnv`` under ``gym.make("CartPole-v1")``).
The state is kept in float64, as gymnasium keeps it, and observations are float32, as gymnasium
returns them, so the two agree to float tolerance step by step.

Finished environments reset in the same ``step`` call (the returned observation is the first one
of the new episode); the observation they finished on comes back separately, so that a learner can
bootstrap from it on truncation.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

GRAVITY = 9.8
MASSCART = 1.0
MASSPOLE = 0.1
TOTAL_MASS = MASSPOLE + MASSCART
LENGTH = 0.5  # half the pole's length
POLEMASS_LENGTH = MASSPOLE * LENGTH
FORCE_MAG = 10.0
TAU = 0.02  # seconds between state updates
THETA_THRESHOLD = 12 * 2 * math.pi / 360
X_THRESHOLD = 2.4
MAX_EPISODE_STEPS = 500
RESET_LOW, RESET_HIGH = -0.05, 0.05

OBS_SIZE = 4
NUM_ACTIONS = 2


class StepResult(NamedTuple):
    obs: torch.Tensor  # (N, 4) float32; for finished envs, the first obs of the next episode
    reward: torch.Tensor  # (N,) float32
    terminated: torch.Tensor  # (N,) bool
    truncated: torch.Tensor  # (N,) bool
    final_obs: torch.Tensor  # (N, 4) float32; the obs each env reached this step, before any reset


def dynamics(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """One euler step of gymnasium's cart-pole, written term for term in the same order."""
    x, x_dot, theta, theta_dot = state.unbind(1)
    force = torch.where(action == 1, FORCE_MAG, -FORCE_MAG).to(state.dtype)
    costheta = torch.cos(theta)
    sintheta = torch.sin(theta)
    temp = (force + POLEMASS_LENGTH * torch.square(theta_dot) * sintheta) / TOTAL_MASS
    thetaacc = (GRAVITY * sintheta - costheta * temp) / (
        LENGTH * (4.0 / 3.0 - MASSPOLE * torch.square(costheta) / TOTAL_MASS)
    )
    xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS
    return torch.stack(
        (
            x + TAU * x_dot,
            x_dot + TAU * xacc,
            theta + TAU * theta_dot,
            theta_dot + TAU * thetaacc,
        ),
        dim=1,
    )


def is_terminal(state: torch.Tensor) -> torch.Tensor:
    x, theta = state[:, 0], state[:, 2]
    return (x < -X_THRESHOLD) | (x > X_THRESHOLD) | (theta < -THETA_THRESHOLD) | (theta > THETA_THRESHOLD)


class CartPoleBatch:
    """``num_envs`` independent CartPole-v1 episodes, stepped together, auto-resetting."""

    def __init__(
        self, num_envs: int, seed: int, device: torch.device | str = "cpu"
    ) -> None:
        self.num_envs = num_envs
        self.seed(seed, device)

    def seed(self, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """(Re)start every episode from a generator seeded with ``seed`` on ``device``.

        The generator lives on the same device as the state so that resets never copy between
        devices; returns the first observation.
        """
        self.device = torch.device(device)
        self.generator = torch.Generator(self.device)
        self.generator.manual_seed(seed)
        self.state = self._draw_reset_states()
        self.elapsed = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        return self.observation()

    def observation(self) -> torch.Tensor:
        return self.state.to(torch.float32)

    def step(self, action: torch.Tensor) -> StepResult:
        state = dynamics(self.state, action)
        terminated = is_terminal(state)
        # gym.make's TimeLimit: truncated once the episode has lasted MAX_EPISODE_STEPS steps,
        # whether or not it also terminated on that step.
        elapsed = self.elapsed + 1
        truncated = elapsed >= MAX_EPISODE_STEPS
        done = terminated | truncated
        # Reset states are drawn for every env on every step, used or not: the generator then
        # advances the same way whatever happens, and there is no data-dependent branch (no
        # host-device sync on a GPU).
        self.state = torch.where(done.unsqueeze(1), self._draw_reset_states(), state)
        self.elapsed = torch.where(done, 0, elapsed)
        # Reward 1 on every step, the terminating one included (CartPole-v1's default).
        reward = torch.ones(self.num_envs, dtype=torch.float32, device=self.device)
        return StepResult(self.observation(), reward, terminated, truncated, state.to(torch.float32))

    def _draw_reset_states(self) -> torch.Tensor:
        # The same affine map as numpy's uniform(low, high): low + (high - low) * U[0, 1).
        u = torch.rand(
            (self.num_envs, OBS_SIZE), generator=self.generator, dtype=torch.float64, device=self.device
        )
        return RESET_LOW + (RESET_HIGH - RESET_LOW) * u

    def state_dict(self) -> dict[str, Any]:
        # Kept on CPU so that a checkpoint loads on any device.
        return {
            "state": self.state.cpu(),
            "elapsed": self.elapsed.cpu(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["state"].shape != (self.num_envs, OBS_SIZE):
            raise ValueError(
                f"cartpole state has shape {tuple(state['state'].shape)}, "
                f"expected ({self.num_envs}, {OBS_SIZE})"
            )
        self.state = state["state"].to(self.device, torch.float64)
        self.elapsed = state["elapsed"].to(self.device, torch.int64)
        self.generator.set_state(state["generator"])
