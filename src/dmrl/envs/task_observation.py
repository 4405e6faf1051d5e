"""An env whose observations also carry the task's parameters: what the oracle baseline sees.

The MAML paper's "oracle" (Finn et al. 2017, section 5.3) is a policy that receives the task (the
goal, the target velocity) as input, so it needs no adaptation: an upper bound for a meta-learner.
Any task family works: the task's arrays (``Tasks``, e.g. ``goal [N, 2]``, ``velocity [N]``) are
flattened per task, in key order, and appended to every observation.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from dmrl.envs.base import BatchedEnv
from dmrl.tasks.distributions import Tasks


def task_features(tasks: Tasks) -> np.ndarray:
    """The task parameters as one row per task.  # [N, task_dim]"""
    n = len(next(iter(tasks.values())))
    return np.concatenate([np.asarray(tasks[k], dtype=np.float32).reshape(n, -1) for k in sorted(tasks)], axis=1)


class TaskInObservation:
    """``env`` with ``task_features(tasks)`` appended to its observations ``[N, B, obs_dim + task_dim]``;
    everything else (actions, rewards, seeding, state) is ``env``'s own."""

    def __init__(self, env: BatchedEnv, task_dim: int) -> None:
        self.env, self.task_dim = env, int(task_dim)
        self.obs_dim = env.obs_dim + self.task_dim
        self._features: Tensor | None = None  # [N, 1, task_dim]

    def __getattr__(self, name: str):  # act_dim, horizon, num_actions, device, seed, state_dict, ...
        return getattr(self.env, name)

    def _with_task(self, obs: Tensor) -> Tensor:
        return torch.cat([obs, self._features.to(obs.dtype).expand(*obs.shape[:2], self.task_dim)], dim=-1)

    def reset(self, tasks: Tasks, episodes: int) -> Tensor:
        obs = self.env.reset(tasks, episodes)
        self._features = torch.as_tensor(task_features(tasks), device=obs.device)[:, None, :]
        return self._with_task(obs)

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict]:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        return self._with_task(obs), reward, terminated, truncated, info
