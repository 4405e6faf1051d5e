"""2-D navigation (Finn et al. 2017, section 5.3).

The agent starts at (0, 0) and moves by velocity actions clipped to [-0.1, 0.1] per axis towards
a goal ``g ~ U[-0.5, 0.5]^2``; the reward is ``-||x - g||_2`` after the move. The paper's text
says squared distance while both reference codes use the plain norm: dmrl's default is the norm
(``env.reward=distance``), the paper's text is ``env.reward=squared_distance``. An episode ends
within 0.01 of the goal or at the horizon (100).

Action units: MAML's original code wraps the env in rllab's ``normalize``, so its policy acts in
``[-1, 1]`` per axis and the env scales that to ``[-0.1, 0.1]`` (``env.normalize_actions=true``, the
default of dmrl's config); a widely used PyTorch port feeds the policy's action to the env as the
velocity itself, clipped (``env.normalize_actions=false``, the classes' default, as the env was
before the option existed; a checkpoint config without the key is given ``false`` explicitly by
``dmrl.stored.migrate``). The dynamics and rewards are the same; what differs is the scale the Gaussian policy
explores and adapts in (a unit standard deviation is the whole action range in the first, ten
times it in the second).
"""

from __future__ import annotations

import gymnasium
import numpy as np
import torch
from torch import Tensor

from dmrl.envs.base import BatchedEnv
from dmrl.errors import ConfigError
from dmrl.keys import BOOL, NON_NEGATIVE, POSITIVE, one_of
from dmrl.tasks.distributions import Tasks

REWARDS = ("distance", "squared_distance")


class PointNav(BatchedEnv):
    obs_dim = 2
    act_dim = 2
    KEYS = {"max_action": POSITIVE, "goal_radius": NON_NEGATIVE, "reward": one_of(REWARDS), "normalize_actions": BOOL}

    def __init__(self, horizon: int = 100, max_action: float = 0.1, goal_radius: float = 0.01,
                 reward: str = "distance", normalize_actions: bool = False, device: str = "cpu") -> None:
        super().__init__(horizon, device)
        self.squared = reward == "squared_distance"
        self.max_action = float(max_action)
        self.normalize_actions = bool(normalize_actions)
        # the env's velocity per unit of the policy's action
        self.action_scale = self.max_action if self.normalize_actions else 1.0
        self.goal_radius = float(goal_radius)
        self.pos: Tensor | None = None  # [N, B, 2]
        self.goal: Tensor | None = None  # [N, 1, 2]
        self.done: Tensor | None = None  # [N, B]

    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """[-1, 1] per axis with normalized actions, [-max_action, max_action] without: the actions
        whose velocity ``step`` does not clip."""
        bound = self.max_action / self.action_scale
        return np.full(self.act_dim, -bound), np.full(self.act_dim, bound)

    def _reset(self, tasks: Tasks, episodes: int) -> Tensor:
        if "goal" not in tasks:
            raise ConfigError(f"point_nav needs tasks with key 'goal', got {sorted(tasks)}: use its task distribution "
                              "(tasks=point_nav or tasks=point_nav_wide)")
        goal = torch.as_tensor(np.asarray(tasks["goal"]), dtype=torch.get_default_dtype(), device=self.device)
        n = goal.shape[0]
        self.goal = goal[:, None, :]
        self.pos = torch.zeros(n, episodes, 2, device=self.device)
        self.done = torch.zeros(n, episodes, dtype=torch.bool, device=self.device)
        return self.pos.clone()

    def _step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, dict]:
        self.check_actions(actions, tuple(self.pos.shape))
        self.pos = self.pos + (actions * self.action_scale).clamp(-self.max_action, self.max_action)
        dist = torch.linalg.vector_norm(self.pos - self.goal, dim=-1)
        self.done = self.done | (dist < self.goal_radius)
        return self.pos.clone(), -(dist.square() if self.squared else dist), self.done.clone(), {}


class PointNavEnv(gymnasium.Env):
    """Single-episode gymnasium view of :class:`PointNav` (``gymnasium.make("dmrl/PointNav-v0")``).

    The same batched dynamics with one task and one episode, so both views agree by construction.
    """

    metadata = {"render_modes": []}

    def __init__(self, horizon: int = 100, task: dict | None = None, normalize_actions: bool = False) -> None:
        self._env = PointNav(horizon=horizon, normalize_actions=normalize_actions)
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        bound = 1.0 if normalize_actions else self._env.max_action
        self.action_space = gymnasium.spaces.Box(-bound, bound, shape=(2,), dtype=np.float32)
        self._task = task or {"goal": np.zeros(2, dtype=np.float32)}
        self._t = 0

    def sample_tasks(self, n: int) -> list[dict]:
        goals = self.np_random.uniform(-0.5, 0.5, size=(n, 2)).astype(np.float32)
        return [{"goal": g} for g in goals]

    def set_task(self, task: dict) -> None:
        self._task = {"goal": np.asarray(task["goal"], dtype=np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and "task" in options:
            self.set_task(options["task"])
        self._t = 0
        obs = self._env.reset({"goal": self._task["goal"][None]}, 1)
        return obs[0, 0].numpy(), {"task": {"goal": self._task["goal"].copy()}}

    def step(self, action):
        a = torch.as_tensor(np.asarray(action, dtype=np.float32)).reshape(1, 1, 2)
        obs, reward, terminated, truncated, _ = self._env.step(a)
        self._t += 1
        return (obs[0, 0].numpy(), float(reward), bool(terminated), bool(truncated),
                {"task": {"goal": self._task["goal"].copy()}})
