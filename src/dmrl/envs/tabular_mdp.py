"""Random tabular MDPs (Duan et al. 2016, RL², section 3.2).

A task is a reward mean per (state, action) and a next-state distribution per (state, action)
(:class:`dmrl.tasks.RandomMDPs`). Every episode starts in state 0 and lasts ``horizon`` steps;
the observation is the one-hot current state and the reward is the mean plus Gaussian noise of
standard deviation ``reward_std`` (unit in the paper). Nothing ends an episode early: ``done``
is always False and the sampler stops at the horizon.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmrl.envs.bandit import DiscreteEnv
from dmrl.errors import ConfigError
from dmrl.keys import NON_NEGATIVE, int_at_least
from dmrl.tasks.distributions import Tasks


class TabularMDP(DiscreteEnv):
    """``states`` states, ``actions`` actions; tasks ``{"reward_mean": [N, S, A], "transitions": [N, S, A, S]}``."""

    KEYS = {"states": int_at_least(1), "actions": int_at_least(2), "reward_std": NON_NEGATIVE}  # and horizon

    def __init__(self, states: int = 10, actions: int = 5, horizon: int = 10, reward_std: float = 1.0,
                 device: str | torch.device = "cpu") -> None:
        super().__init__(horizon=horizon, num_actions=actions, device=device)
        self.states, self.actions, self.reward_std = states, actions, float(reward_std)
        self.obs_dim = states
        self.eye = torch.eye(states, device=self.device)  # one-hot rows, gathered as observations
        self.reward_mean: Tensor | None = None  # [N * S * A]
        self.cdf: Tensor | None = None  # [N * S * A, S], each row's cumulative next-state probabilities
        self.state: Tensor | None = None  # [N, B] long: each episode's current state
        self.shape: tuple[int, int] | None = None  # (N, B)
        self.task_offset: Tensor | None = None  # [N, 1]: n * S, the first flat row of task n

    def _reset(self, tasks: Tasks, episodes: int) -> Tensor:
        missing = {"reward_mean", "transitions"} - set(tasks)
        if missing:
            raise ConfigError(f"tabular_mdp needs tasks with keys 'reward_mean' and 'transitions', got "
                              f"{sorted(tasks)}: use its task distribution (tasks=tabular_mdp)")
        S, A = self.states, self.actions
        dtype = torch.get_default_dtype()
        reward_mean = torch.as_tensor(tasks["reward_mean"], dtype=dtype, device=self.device)
        transitions = torch.as_tensor(tasks["transitions"], dtype=dtype, device=self.device)
        n = reward_mean.shape[0] if reward_mean.dim() else 0
        if tuple(reward_mean.shape) != (n, S, A) or tuple(transitions.shape) != (n, S, A, S):
            raise ConfigError(f"env.states={S}, env.actions={A} but the tasks have reward_mean "
                              f"{tuple(reward_mean.shape)} and transitions {tuple(transitions.shape)}, expected "
                              f"[N, {S}, {A}] and [N, {S}, {A}, {S}]: set tasks.states and tasks.actions to "
                              "${env.states} and ${env.actions}")
        self.reward_mean = reward_mean.reshape(-1)
        # Inverse-CDF sampling: next state = the number of cumulative probabilities <= u, u ~ U[0, 1).
        # A zero-probability state has an empty interval; the last entry is pinned to 1 so float
        # rounding can never send u past the last state.
        cdf = (transitions / transitions.sum(-1, keepdim=True)).cumsum(-1).reshape(-1, S)
        cdf[:, -1] = 1.0
        self.cdf = cdf
        self.shape = (n, int(episodes))
        self.state = torch.zeros(self.shape, dtype=torch.long, device=self.device)
        self.task_offset = torch.arange(n, device=self.device).unsqueeze(1) * S  # [N, 1]
        return self.observe()

    def observe(self) -> Tensor:
        """One-hot of the current states, ``[N, B, S]``."""
        return self.eye.index_select(0, self.state.reshape(-1)).reshape(*self.shape, self.states)

    def _step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, dict]:
        if self.shape is None:
            raise RuntimeError("call reset(tasks, episodes) before step")
        actions = self.check_discrete_actions(actions, self.shape)
        N, B = self.shape
        row = (self.task_offset + self.state) * self.actions + actions  # [N, B] flat (task, state, action)
        mean = self.reward_mean.take(row)
        noise = torch.randn(self.shape, generator=self.generator, device=self.device, dtype=mean.dtype)
        reward = mean + self.reward_std * noise
        cdf = self.cdf.index_select(0, row.reshape(-1)).reshape(N, B, self.states)  # [N, B, S]
        u = torch.rand(N, B, 1, generator=self.generator, device=self.device, dtype=cdf.dtype)
        self.state = (cdf <= u).sum(-1)  # [N, B]
        return self.observe(), reward, torch.zeros(self.shape, dtype=torch.bool, device=self.device), {}
