"""Bernoulli multi-armed bandits (Duan et al. 2016, RL², section 3.1).

A task is ``k`` arms with success probabilities ``p``; pulling arm ``a`` pays 1 with
probability ``p[a]``, else 0. An episode is one pull (``horizon = 1``) and the observation is a
constant, so everything the agent learns comes from its previous actions and rewards; a trial
of ``n`` pulls is ``n`` episodes, strung together by the RL² sampler.

:class:`DiscreteEnv` holds what the bandit and the tabular MDP share: integer actions and a
``torch.Generator`` on the env's device, so drawing the randomness of 10^5 episodes costs one
kernel and never leaves the device.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmrl.envs.base import BatchedEnv
from dmrl.errors import ConfigError
from dmrl.keys import int_at_least
from dmrl.tasks.distributions import Tasks


class DiscreteEnv(BatchedEnv):
    """A batched env with integer actions in ``[0, num_actions)`` and a device-side generator."""

    act_dim = 1

    def __init__(self, horizon: int, num_actions: int, device: str | torch.device = "cpu") -> None:
        super().__init__(horizon, device)
        self.num_actions = int(num_actions)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(0)

    def seed(self, seed: int) -> None:
        super().seed(seed)
        self.generator.manual_seed(int(seed))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "generator" in state:
            self.generator.set_state(state["generator"])

    def check_discrete_actions(self, actions: Tensor, expected: tuple[int, ...]) -> Tensor:
        """Shape, dtype and range of ``actions [N, B]``; returns them as int64 on the env's device."""
        self.check_actions(actions, expected)
        if actions.dtype.is_floating_point or actions.dtype.is_complex or actions.dtype == torch.bool:
            raise ValueError(f"actions must be integers in [0, {self.num_actions}), got dtype {actions.dtype}")
        actions = actions.to(device=self.device, dtype=torch.long)
        if actions.numel():
            low, high = torch.aminmax(actions)
            if low < 0 or high >= self.num_actions:
                raise ValueError(f"actions must be integers in [0, {self.num_actions}), got values in "
                                 f"[{int(low)}, {int(high)}]")
        return actions


class Bandit(DiscreteEnv):
    """``k``-armed Bernoulli bandit; tasks ``{"p": [N, k]}`` (:class:`dmrl.tasks.BernoulliBandits`).

    ``reset`` returns ones ``[N, B, 1]``; ``step(actions [N, B])`` returns ``(ones, reward, done)``
    with ``reward[n, b] ~ Bernoulli(p[n, actions[n, b]])`` and ``done`` all True.
    """

    obs_dim = 1
    KEYS = {"arms": int_at_least(2), "horizon": None}  # (dmrl.keys) its horizon is 1, not a key

    def __init__(self, arms: int = 5, device: str | torch.device = "cpu") -> None:
        # One pull per episode: RL²'s trial of n pulls is n one-step episodes (section 3.1).
        super().__init__(horizon=1, num_actions=arms, device=device)
        self.arms = arms
        self.p: Tensor | None = None  # [N, k]
        self.shape: tuple[int, int] | None = None  # (N, B)

    def _reset(self, tasks: Tasks, episodes: int) -> Tensor:
        if "p" not in tasks:
            raise ConfigError(f"bandit needs tasks with key 'p', got {sorted(tasks)}: use its task distribution "
                              "(tasks=bandit)")
        p = torch.as_tensor(tasks["p"], dtype=torch.get_default_dtype(), device=self.device)
        if p.dim() != 2 or p.shape[1] != self.arms:
            raise ConfigError(f"env.arms={self.arms} but the tasks' p has shape {tuple(p.shape)}, expected "
                              f"[N, {self.arms}]: set tasks.arms to ${{env.arms}}")
        self.p = p
        self.shape = (p.shape[0], int(episodes))
        return torch.ones(*self.shape, 1, device=self.device)

    def _step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, dict]:
        if self.shape is None:
            raise RuntimeError("call reset(tasks, episodes) before step")
        actions = self.check_discrete_actions(actions, self.shape)
        p = self.p.gather(1, actions)  # [N, B]
        u = torch.rand(self.shape, generator=self.generator, device=self.device, dtype=p.dtype)
        reward = (u < p).to(p.dtype)
        obs = torch.ones(*self.shape, 1, device=self.device)
        return obs, reward, torch.ones(self.shape, dtype=torch.bool, device=self.device), {}
