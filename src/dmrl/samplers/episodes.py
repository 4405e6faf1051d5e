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
    # gymnasium's step outputs (a sampler fills them; batches built by hand may leave them out)
    next_obs: Tensor | None = None  # [T, N, B, obs_dim], the observation after the action
    terminated: Tensor | None = None  # [T, N, B] bool: a terminal state of the task (its value is 0)
    truncated: Tensor | None = None  # [T, N, B] bool: the time limit, not a terminal state
    success: Tensor | None = None  # [T, N, B] bool, where the env reports success in its info
    dense_rewards: Tensor | None = None  # [T, N, B], a sparse family's shaped reward (info["dense_reward"])

    @property
    def task_success(self) -> Tensor | None:
        """Fraction of each task's episodes in which some step succeeded (the Meta-World convention).  # [N]"""
        if self.success is None:
            return None
        return ((self.success & (self.mask > 0)).any(0)).float().mean(-1)

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
