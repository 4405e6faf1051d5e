"""PEARL's point robot (Rakelly et al. 2019, shared/REFERENCES.md): a dense and a sparse variant.

The robot starts at (0, 0) and moves by velocity actions; the policy acts in ``[-1, 1]`` per axis,
scaled to ``max_action`` (0.1, the reference's action box after its normalization wrapper).
Episodes last ``horizon`` (20) steps and never end early.

- ``PointRobot``: goals ``g ~ U[-1, 1]^2`` (``tasks=point_robot``), reward ``-||x - g||`` after the move.
- ``SparsePointRobot``: goals on the upper half of the unit circle (``tasks=sparse_point_robot``);
  the reward is ``1 - ||x - g||`` within ``goal_radius`` (0.2) of the goal and 0 elsewhere (the
  reference's sparse reward, made positive as in its code), and each step's ``info["success"]``
  says whether the robot is within ``goal_radius``: a trajectory hits its goal when any step does.
  ``info["dense_reward"]`` carries ``-||x - g||``: the reference trains PEARL's critic on it and
  gives only the sparse reward to the context encoder (``algo.dense_rl_reward``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from dmrl.envs.base import BatchedEnv
from dmrl.errors import ConfigError
from dmrl.keys import POSITIVE
from dmrl.tasks.distributions import Tasks


class PointRobot(BatchedEnv):
    obs_dim = 2
    act_dim = 2
    KEYS = {"max_action": POSITIVE}  # and BatchedEnv's horizon

    def __init__(self, horizon: int = 20, max_action: float = 0.1, device: str = "cpu") -> None:
        super().__init__(horizon, device)
        self.max_action = float(max_action)
        self.pos: Tensor | None = None  # [N, B, 2]
        self.goal: Tensor | None = None  # [N, 1, 2]

    def action_bounds(self) -> tuple[Tensor, Tensor]:
        return -torch.ones(2, device=self.device), torch.ones(2, device=self.device)

    def _reset(self, tasks: Tasks, episodes: int) -> Tensor:
        if "goal" not in tasks:
            raise ConfigError(f"{type(self).__name__} needs tasks with key 'goal', got {sorted(tasks)}")
        goal = torch.as_tensor(np.asarray(tasks["goal"]), dtype=torch.get_default_dtype(), device=self.device)
        self.goal = goal[:, None, :]
        self.pos = torch.zeros(goal.shape[0], episodes, 2, device=self.device)
        return self.pos.clone()

    def _move(self, actions: Tensor) -> Tensor:
        """Move by the scaled action; the distance to the goal afterwards.  # [N, B]"""
        self.check_actions(actions, tuple(self.pos.shape))
        self.pos = self.pos + actions.clamp(-1.0, 1.0) * self.max_action
        return torch.linalg.vector_norm(self.pos - self.goal, dim=-1)

    def _step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, dict]:
        dist = self._move(actions)
        return self.pos.clone(), -dist, torch.zeros_like(dist, dtype=torch.bool), {}


class SparsePointRobot(PointRobot):
    KEYS = {"goal_radius": POSITIVE}
    def __init__(self, horizon: int = 20, max_action: float = 0.1, goal_radius: float = 0.2,
                 device: str = "cpu") -> None:
        super().__init__(horizon, max_action, device)
        self.goal_radius = float(goal_radius)

    def _step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, dict]:
        dist = self._move(actions)
        hit = dist <= self.goal_radius
        reward = torch.where(hit, 1.0 - dist, torch.zeros_like(dist))
        return self.pos.clone(), reward, torch.zeros_like(hit), {"success": hit, "dense_reward": -dist}
