"""Roll out RL² trials: ``episodes_per_trial`` episodes of the same task with one hidden state.

Every trial of every task steps together: one GRU call and one environment step per time step
for all ``tasks x trials`` sequences. Each episode gets ``env.horizon`` time slots; after an episode
ends early its remaining slots are padding, in which the hidden state and the previous-step
inputs stay frozen. The returned batch is compacted so that each trial's real steps come first
(``mask`` is a prefix of ones): a GRU run over the compacted inputs from a zero state sees exactly
what the sampler's GRU saw.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from dmrl.envs.base import BatchedEnv
from dmrl.policies.recurrent import RecurrentPolicy
from dmrl.samplers.batched import SeededSampler
from dmrl.tasks.distributions import Tasks


@dataclass
class Trials:
    inputs: Tensor  # [T, N, B, input_dim], what the GRU saw at each step
    actions: Tensor  # [T, N, B] integers or [T, N, B, act_dim]
    log_probs: Tensor  # [T, N, B], under the sampling policy
    values: Tensor  # [T, N, B], the value head's estimates while sampling
    rewards: Tensor  # [T, N, B]
    mask: Tensor  # [T, N, B], 1 for real steps (a prefix of each trial after compaction)
    episode_returns: Tensor  # [E, N, B], undiscounted return of each episode of each trial
    episode_success: Tensor | None = None  # [E, N, B] bool, an episode with a successful step (where the env reports it)

    @property
    def env_steps(self) -> int:
        return int(self.mask.sum().item())

    def flat(self, name: str) -> Tensor:
        """``name`` with the task and trial axes merged into one sequence axis ``[T, N * B, ...]``."""
        x = getattr(self, name)
        return x.reshape(x.shape[0], x.shape[1] * x.shape[2], *x.shape[3:])


class TrialSampler(SeededSampler):
    def __init__(self, env: BatchedEnv, policy: RecurrentPolicy, trials_per_task: int, episodes_per_trial: int,
                 seed: int) -> None:
        self.policy = policy
        self.trials_per_task = int(trials_per_task)
        self.episodes_per_trial = int(episodes_per_trial)
        super().__init__(env, seed)

    def rebuild_args(self) -> dict[str, int]:
        """The constructor arguments besides env, policy and seed (a Ray worker rebuilds the sampler)."""
        return {"trials_per_task": self.trials_per_task, "episodes_per_trial": self.episodes_per_trial}

    @torch.no_grad()
    def sample(self, tasks: Tasks, trials: int | None = None, episodes_per_trial: int | None = None) -> Trials:
        with self.env.rollout():
            return self._sample(tasks, trials, episodes_per_trial)

    def _sample(self, tasks: Tasks, trials: int | None, episodes_per_trial: int | None) -> Trials:
        env, policy = self.env, self.policy
        B, E, H = trials or self.trials_per_task, episodes_per_trial or self.episodes_per_trial, env.horizon
        dev = env.device
        obs = env.reset(tasks, B)  # [N, B, obs_dim]
        N = obs.shape[0]
        M, T = N * B, E * H
        act_shape = (N, B) if policy.discrete else (N, B, env.act_dim)
        # No previous action at a trial's start: -1 (a zero one-hot) or a zero vector.
        prev_a = (torch.full(act_shape, -1, dtype=torch.long, device=dev) if policy.discrete
                  else torch.zeros(act_shape, device=dev))
        prev_r = torch.zeros(N, B, device=dev)
        prev_d = torch.zeros(N, B, device=dev)
        prev_o = torch.zeros_like(obs)
        h = policy.initial_state(M, dev)
        inputs = torch.zeros(T, N, B, policy.input_dim, device=dev)
        actions = torch.zeros((T, *act_shape), dtype=prev_a.dtype, device=dev)
        log_probs = torch.zeros(T, N, B, device=dev)
        values = torch.zeros(T, N, B, device=dev)
        rewards = torch.zeros(T, N, B, device=dev)
        mask = torch.zeros(T, N, B, device=dev)
        episode_returns = torch.zeros(E, N, B, device=dev)
        episode_success = None
        early_end = False
        for e in range(E):
            if e > 0:
                obs = env.reset(tasks, B)
            alive = torch.ones(N, B, dtype=torch.bool, device=dev)
            for k in range(H):
                t = e * H + k
                x = policy.inputs(obs, prev_a, prev_r, prev_d, prev_o)
                head, value, h_new = policy.step(x.reshape(M, -1), h)
                a, logp = policy.sample(head, self.generator)
                a = a.reshape(act_shape)
                obs_before = obs
                obs, r, terminated, truncated, info = env.step(a)
                if "success" in info:
                    if episode_success is None:
                        episode_success = torch.zeros(E, N, B, dtype=torch.bool, device=dev)
                    episode_success[e] |= info["success"] & alive
                d = terminated | truncated
                inputs[t], actions[t], log_probs[t], values[t] = x, a, logp.reshape(N, B), value.reshape(N, B)
                rewards[t] = r * alive
                mask[t] = alive
                episode_returns[e] += r * alive
                last = d | (k == H - 1)
                if early_end or not bool(alive.all()):
                    early_end = True
                    keep = alive.reshape(M, 1)
                    h = torch.where(keep, h_new, h)
                    prev_a = torch.where(alive.reshape(*alive.shape, *([1] * (a.dim() - 2))), a, prev_a)
                    prev_r = torch.where(alive, r, prev_r)
                    prev_d = torch.where(alive, last.to(prev_d.dtype), prev_d)
                    prev_o = torch.where(alive.unsqueeze(-1), obs_before, prev_o)
                else:
                    h, prev_a, prev_r, prev_d, prev_o = h_new, a, r, last.to(prev_d.dtype), obs_before
                alive = alive & ~d
                if not bool(alive.any()):
                    early_end = early_end or k < H - 1  # the episode's remaining slots are padding
                    break
        batch = Trials(inputs, actions, log_probs, values, rewards, mask, episode_returns, episode_success)
        return _compact(batch) if early_end else batch


def _compact(batch: Trials) -> Trials:
    """Move each trial's real steps to the front, keeping their order (a stable sort on the mask)."""
    order = torch.sort((batch.mask == 0).to(torch.int8), dim=0, stable=True).indices  # [T, N, B]
    length = int(batch.mask.sum(0).max().item())
    out = {}
    for f in fields(batch):
        x = getattr(batch, f.name)
        if f.name in ("episode_returns", "episode_success"):  # per episode, not per step
            out[f.name] = x
            continue
        idx = order.reshape(*order.shape, *([1] * (x.dim() - 3))).expand_as(x)
        out[f.name] = torch.gather(x, 0, idx)[:length]
    return Trials(**out)
