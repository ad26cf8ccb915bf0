"""PPO on batched CartPole-v1: the example recipe (``train.recipe: launcher.recipes.ppo:PPO``).

One ``train_step`` is one rollout of ``rollout_steps`` steps in each of ``num_envs`` environments
followed by one PPO update (``update_epochs`` passes of ``num_minibatches`` minibatches), so the
spec's ``train.steps`` counts rollout+update rounds.

Every source of randomness is a generator the recipe owns (the environments' reset generator and
a policy generator for action sampling and minibatch shuffling), and both are in ``state_dict``,
so a run resumed from a checkpoint continues bit for bit. Under DDP each process runs its own
environments, seeded with ``seed + process_index``; DDP averages the gradients, so the parameters
stay identical on every process.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from launcher.recipes.cartpole import NUM_ACTIONS, OBS_SIZE, CartPoleBatch

# Window of the trailing mean return; CartPole-v1 counts as solved at a mean of 475 over 100.
RETURN_WINDOW = 100
# Keeps the policy generator's stream apart from the environments' for the same seed.
POLICY_SEED_OFFSET = 1 << 32


# The config's JSON Schema lives beside this module, so `launch check` can validate train.config
# without importing torch (see launcher.spec.recipe_config).
CONFIG_SCHEMA: dict[str, Any] = json.loads(
    Path(__file__).with_name("ppo.PPO.schema.json").read_text("utf-8"))


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    num_envs: int
    rollout_steps: int
    hidden_sizes: tuple[int, ...]
    activation: str
    learning_rate: float
    adam_eps: float
    gamma: float
    gae_lambda: float
    clip_coef: float
    ent_coef: float
    vf_coef: float
    max_grad_norm: float
    update_epochs: int
    num_minibatches: int
    norm_adv: bool
    torch_threads: int

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> PPOConfig:
        # The launcher validates train.config against CONFIG_SCHEMA before a run; this only
        # refuses unknown keys (the schema is closed) and fills in the defaults.
        properties = CONFIG_SCHEMA["properties"]
        unknown = sorted(set(config) - set(properties))
        if unknown:
            raise ValueError(f"unknown PPO config keys: {', '.join(unknown)}")
        merged = {name: prop["default"] for name, prop in properties.items()} | config
        merged["hidden_sizes"] = tuple(merged["hidden_sizes"])
        cfg = cls(**merged)
        if (cfg.num_envs * cfg.rollout_steps) % cfg.num_minibatches:
            raise ValueError("num_minibatches must divide num_envs * rollout_steps")
        return cfg


ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


def mlp(sizes: list[int], activation: str, out_gain: float) -> nn.Sequential:
    """MLP with orthogonal init: the usual PPO initialisation, which matters for stability."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        linear = nn.Linear(fan_in, fan_out)
        nn.init.orthogonal_(linear.weight, gain=out_gain if last else 2**0.5)
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    def __init__(self, hidden_sizes: tuple[int, ...], activation: str) -> None:
        super().__init__()
        # A small output gain keeps the initial policy near uniform.
        self.actor = mlp([OBS_SIZE, *hidden_sizes, NUM_ACTIONS], activation, out_gain=0.01)
        self.critic = mlp([OBS_SIZE, *hidden_sizes, 1], activation, out_gain=1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor(obs), self.critic(obs).squeeze(-1)


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    done: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Generalised advantage estimates for (T, N) rollouts.

    ``next_values[t]`` is the value of the observation reached by step t, before any reset (the
    final observation of a finished episode), so a truncated step bootstraps from where it was
    cut off, while a terminated one does not bootstrap at all. ``done`` (terminated or truncated)
    stops the advantage from flowing back across an episode boundary.
    """
    delta = rewards + gamma * next_values * (~terminated) - values
    carry = (gamma * lam) * (~done).to(values.dtype)
    advantages = torch.empty_like(values)
    last = torch.zeros_like(values[0])
    for t in range(values.shape[0] - 1, -1, -1):
        last = delta[t] + carry[t] * last
        advantages[t] = last
    return advantages


@dataclasses.dataclass
class Rollout:
    obs: torch.Tensor  # (T, N, 4)
    final_obs: torch.Tensor  # (T, N, 4): obs reached by each step, before auto-reset
    actions: torch.Tensor  # (T, N)
    logprobs: torch.Tensor  # (T, N)
    rewards: torch.Tensor  # (T, N)
    terminated: torch.Tensor  # (T, N)
    done: torch.Tensor  # (T, N)
    episode_returns: torch.Tensor  # (T, N): the return of the episode that ended there, if done


def sample_actions(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Categorical sample by the Gumbel-max trick, drawn from the recipe's own generator."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    return torch.argmax(logits - torch.log(-torch.log(u)), dim=-1)


class PPO:
    config_schema: ClassVar[dict[str, Any]] = CONFIG_SCHEMA
    model_fields: ClassVar[tuple[str, ...]] = ("hidden_sizes", "activation")
    # The mean return of the last 100 episodes: what the progress line, the summary and
    # checkpoint.keep_best go by.
    objective: ClassVar[tuple[str, str]] = ("return_mean100", "max")
    progress: ClassVar[tuple[str, ...]] = ("loss",)

    def __init__(self, config: dict[str, Any], seed: int) -> None:
        self.cfg = PPOConfig.from_dict(config)
        self.seed = seed
        if self.cfg.torch_threads:
            # Also fixes the reduction order of CPU kernels, which a bit-identical resume needs.
            torch.set_num_threads(self.cfg.torch_threads)
        # The model's initialisation depends on the seed alone and leaves the global RNG as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model: nn.Module = ActorCritic(self.cfg.hidden_sizes, self.cfg.activation)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=self.cfg.learning_rate, eps=self.cfg.adam_eps, fused=True
        )
        self.accelerator: Any = None
        self.env = CartPoleBatch(self.cfg.num_envs, seed)
        self._start_streams(seed, torch.device("cpu"))
        self.recent_returns: collections.deque[float] = collections.deque(maxlen=RETURN_WINDOW)
        self.episodes = 0
        self.env_steps = 0

    def _start_streams(self, seed: int, device: torch.device) -> None:
        """Seed the environments and the policy generator for this process on ``device``."""
        self.obs = self.env.seed(seed, device)
        self.generator = torch.Generator(device)
        self.generator.manual_seed(seed + POLICY_SEED_OFFSET)
        self.episode_return = torch.zeros(self.cfg.num_envs, device=device)

    def setup(self, accelerator: Any) -> None:
        self.accelerator = accelerator
        self.model, self.optimizer = accelerator.prepare(self.model, self.optimizer)
        # The process index is known only now: restart the streams seeded for this process and
        # on its device (a checkpoint, if any, is loaded after this and replaces them).
        self._start_streams(self.seed + accelerator.process_index, accelerator.device)

    @property
    def device(self) -> torch.device:
        return self.obs.device

    def _policy(self) -> ActorCritic:
        # Rollouts and value estimates skip the DDP wrapper: no gradients flow there, and the
        # parameters are the same tensors.
        if self.accelerator is None:
            return self.model  # type: ignore[return-value]
        return self.accelerator.unwrap_model(self.model)

    def train_step(self, step: int) -> dict[str, float]:
        rollout = self._collect()
        advantages, returns = self._advantages(rollout)
        metrics = self._update(rollout, advantages, returns)
        self._record_episodes(rollout)
        return metrics | {
            "return_mean100": (
                sum(self.recent_returns) / len(self.recent_returns) if self.recent_returns else 0.0
            ),
            "episodes": float(self.episodes),
            "env_steps": float(self.env_steps),
        }

    @torch.no_grad()
    def _collect(self) -> Rollout:
        T, N = self.cfg.rollout_steps, self.cfg.num_envs
        dev = self.device
        obs_buf = torch.empty((T, N, OBS_SIZE), device=dev)
        final_buf = torch.empty((T, N, OBS_SIZE), device=dev)
        act_buf = torch.empty((T, N), dtype=torch.int64, device=dev)
        logp_buf = torch.empty((T, N), device=dev)
        rew_buf = torch.empty((T, N), device=dev)
        term_buf = torch.empty((T, N), dtype=torch.bool, device=dev)
        done_buf = torch.empty((T, N), dtype=torch.bool, device=dev)
        ret_buf = torch.empty((T, N), device=dev)
        actor = self._policy().actor
        obs, ep_ret = self.obs, self.episode_return
        for t in range(T):
            logits = actor(obs)
            action = sample_actions(logits, self.generator)
            obs_buf[t] = obs
            act_buf[t] = action
            logp_buf[t] = torch.log_softmax(logits, -1).gather(-1, action.unsqueeze(-1)).squeeze(-1)
            res = self.env.step(action)
            done = res.terminated | res.truncated
            ep_ret = ep_ret + res.reward
            rew_buf[t] = res.reward
            term_buf[t] = res.terminated
            done_buf[t] = done
            final_buf[t] = res.final_obs
            ret_buf[t] = ep_ret
            ep_ret = ep_ret.masked_fill(done, 0.0)
            obs = res.obs
        self.obs, self.episode_return = obs, ep_ret
        self.env_steps += T * N
        return Rollout(obs_buf, final_buf, act_buf, logp_buf, rew_buf, term_buf, done_buf, ret_buf)

    @torch.no_grad()
    def _advantages(self, r: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
        # Values are computed once per rollout, batched, instead of once per environment step.
        critic = self._policy().critic
        values = critic(r.obs).squeeze(-1)
        next_values = critic(r.final_obs).squeeze(-1)
        adv = gae(r.rewards, values, next_values, r.terminated, r.done, self.cfg.gamma, self.cfg.gae_lambda)
        return adv, adv + values

    def _record_episodes(self, r: Rollout) -> None:
        # Boolean indexing flattens time-major, so episodes are recorded in the order they ended.
        finished = r.episode_returns[r.done].tolist()
        self.recent_returns.extend(finished)
        self.episodes += len(finished)

    def _update(self, r: Rollout, advantages: torch.Tensor, returns: torch.Tensor) -> dict[str, float]:
        obs = r.obs.reshape(-1, OBS_SIZE)
        actions, old_logp = r.actions.reshape(-1), r.logprobs.reshape(-1)
        advantages, returns = advantages.reshape(-1), returns.reshape(-1)
        batch = obs.shape[0]
        mb_size = batch // self.cfg.num_minibatches
        stats: list[torch.Tensor] = []
        for _ in range(self.cfg.update_epochs):
            perm = torch.randperm(batch, generator=self.generator, device=self.device)
            for idx in perm.split(mb_size):
                stats.append(
                    self._minibatch(obs[idx], actions[idx], old_logp[idx], advantages[idx], returns[idx])
                )
        keys = ("loss", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac")
        return dict(zip(keys, torch.stack(stats).mean(0).tolist()))

    def _minibatch(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        old_logp: torch.Tensor,
        adv: torch.Tensor,
        returns: torch.Tensor,
    ) -> torch.Tensor:
        acc, cfg = self.accelerator, self.cfg
        accumulate = acc.accumulate(self.model) if acc is not None else contextlib.nullcontext()
        autocast = acc.autocast() if acc is not None else contextlib.nullcontext()
        with accumulate:
            with autocast:
                logits, value = self.model(obs)
            # Losses in float32 whatever the autocast precision.
            logp_all = torch.log_softmax(logits.float(), -1)
            value = value.float()
            logp = logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
            log_ratio = logp - old_logp
            ratio = log_ratio.exp()
            if cfg.norm_adv:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            policy_loss = torch.max(
                -adv * ratio, -adv * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)
            ).mean()
            value_loss = 0.5 * (value - returns).square().mean()
            loss = policy_loss - cfg.ent_coef * entropy + cfg.vf_coef * value_loss
            self._backward_and_step(loss)
        with torch.no_grad():
            approx_kl = ((ratio - 1) - log_ratio).mean()
            clip_frac = ((ratio - 1).abs() > cfg.clip_coef).float().mean()
            return torch.stack([loss, policy_loss, value_loss, entropy, approx_kl, clip_frac]).detach()

    def _backward_and_step(self, loss: torch.Tensor) -> None:
        acc, cfg = self.accelerator, self.cfg
        if acc is None:
            loss.backward()
            if cfg.max_grad_norm > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        else:
            acc.backward(loss)
            # Under gradient accumulation, clip only the summed gradient, right before the step.
            if cfg.max_grad_norm > 0 and acc.sync_gradients:
                acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        """This process's own state (each process has its own environments and generators).

        The runtime saves one of these per process and gives each process its own back; plain
        tensors, numbers and lists only, so that it loads with ``torch.load(weights_only=True)``.
        """
        return {
            "env": self.env.state_dict(),
            "obs": self.obs.cpu(),
            "episode_return": self.episode_return.cpu(),
            "recent_returns": list(self.recent_returns),
            "episodes": self.episodes,
            "env_steps": self.env_steps,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dev = self.device
        self.env.load_state_dict(state["env"])
        self.obs = state["obs"].to(dev)
        self.episode_return = state["episode_return"].to(dev)
        self.recent_returns = collections.deque(state["recent_returns"], maxlen=RETURN_WINDOW)
        self.episodes = int(state["episodes"])
        self.env_steps = int(state["env_steps"])
        self.generator.set_state(state["generator"])


# -- evaluate (stages.evaluate) ---------------------------------------------------------------

# Evaluation episodes start from their own seeds: never the streams the training envs used.
EVAL_SEED_OFFSET = 1 << 40


@torch.no_grad()
def evaluate(ctx: Any) -> dict[str, float]:
    """The greedy policy (argmax of the actor) for one episode in each of ``episodes`` fresh
    CartPole-v1 environments; ``ctx`` is a launcher.runtime.pipeline.stages.StageContext with the
    newest checkpoint loaded into ``ctx.recipe``."""
    properties = EVAL_SCHEMA["properties"]
    cfg = {name: prop["default"] for name, prop in properties.items()} | dict(ctx.config)
    policy = ctx.accelerator.unwrap_model(ctx.recipe.model)
    device = ctx.accelerator.device
    episodes = cfg["episodes"]
    env = CartPoleBatch(episodes, ctx.seed + EVAL_SEED_OFFSET, device)
    obs = env.observation()
    returns = torch.zeros(episodes, device=device)
    running = torch.ones(episodes, dtype=torch.bool, device=device)
    while running.any():  # every episode ends within MAX_EPISODE_STEPS (truncation)
        result = env.step(policy.actor(obs).argmax(-1))
        returns += result.reward * running
        running &= ~(result.terminated | result.truncated)
        obs = result.obs
    ctx.log(f"greedy policy over {episodes} fresh episodes: mean return "
            f"{returns.mean().item():.1f}, min {returns.min().item():.1f}")
    return {"mean_return": returns.mean().item(), "min_return": returns.min().item(),
            "episodes": episodes}


EVAL_SCHEMA: dict[str, Any] = json.loads(
    Path(__file__).with_name("ppo.evaluate.schema.json").read_text("utf-8"))
