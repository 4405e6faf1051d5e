"""A batch of episodes, time-major: ``[T, tasks, episodes, ...]``."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class Episodes:
    obs: Tensor  # [T, N, B, obs_dim], the observation each action was taken in
    actions: Tensor  # [T, N, B, act_dim], as sampled (before the env clips them)
    rewards: Tensor  # [T, N, B]
    mask: Tensor  # [T, N, B], 1 while the episode runs, 0 after it ended

    @property
    def task_returns(self) -> Tensor:
        """Mean undiscounted episode return of each task.  # [N]"""
        return (self.rewards * self.mask).sum(0).mean(-1)

    @property
    def env_steps(self) -> int:
        return int(self.mask.sum().item())

    @property
    def obs_task_major(self) -> Tensor:
        """Observations ``[N, T, B, obs_dim]`` for a policy called with per-task parameters."""
        return self.obs.transpose(0, 1)
