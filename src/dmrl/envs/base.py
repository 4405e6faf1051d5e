"""The batched environment interface every task family implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
from torch import Tensor

from dmrl.keys import int_at_least
from dmrl.tasks.distributions import Tasks


class BatchedEnv(ABC):
    """``tasks x episodes`` independent episodes advanced together by one ``step`` call.

    ``reset(tasks, episodes)`` starts ``episodes`` episodes of each of the ``N`` tasks and returns
    observations ``[N, episodes, obs_dim]``; ``step(actions [N, episodes, act_dim])`` returns
    gymnasium's five values, batched: ``(obs, reward [N, episodes], terminated [N, episodes],
    truncated [N, episodes], info)``. ``terminated``: the episode reached a terminal state of the
    task (a goal, a fall, a bandit's single pull), whose value is 0; ``truncated``: it hit the time
    limit ``horizon`` without one (not a terminal state: an off-policy critic bootstraps there).
    ``info`` may hold ``success [N, episodes]`` (bool) where the family defines success. An
    episode that has ended stays ended until the next ``reset``; the sampler masks whatever it
    reports afterwards.

    A family implements ``_reset`` and ``_step`` (``-> obs, reward, terminated, info``); the time
    limit is counted here, once for every family.

    Envs with randomness of their own (initial-state noise) draw it from ``self.rng``, seeded by
    ``seed()`` and saved in checkpoints through ``state_dict()``.
    """

    obs_dim: int
    act_dim: int  # continuous: action dimensions; discrete: 1
    horizon: int
    num_actions: int | None = None  # discrete envs: actions are integers in [0, num_actions), shape [N, B]
    engine: str | None = None  # what steps the physics, in words, where that can differ (the run's log names it)
    # Config keys of every family (dmrl.keys); each adds its own. ``device`` is the run's, given by dmrl.build
    KEYS = {"horizon": int_at_least(1)}

    def __init__(self, horizon: int, device: str | torch.device = "cpu") -> None:
        self.horizon = int(horizon)
        self.device = torch.device(device)
        self.rng = np.random.default_rng(0)

    def seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]

    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Continuous envs: the box ``(low, high)`` (``[act_dim]`` each) of the actions the env tells
        apart; it clips every action to this box, so a uniform policy over it is uniform over what
        the env does (``dmrl-eval policy=random``)."""
        raise NotImplementedError(f"{type(self).__name__} declares no action range (BatchedEnv.action_bounds)")

    def task_groups(self, tasks: Tasks) -> list[str] | None:
        """A group name per task of a batch where the family's tasks fall in named groups (Meta-World's
        task classes): evaluation then reports return and success per group. None: no groups."""
        return None

    def rollout(self) -> AbstractContextManager:
        """The context a sampler's time loop runs in (from its ``reset`` to its last ``step``): nothing
        here; an env whose stepping runs in other processes frees the cores for them (Meta-World)."""
        return nullcontext()

    def reset(self, tasks: Tasks, episodes: int) -> Tensor:
        self.t = 0
        return self._reset(tasks, episodes)

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict]:
        obs, reward, terminated, info = self._step(actions)
        self.t += 1
        truncated = ~terminated if self.t >= self.horizon else torch.zeros_like(terminated)
        return obs, reward, terminated, truncated, info

    @abstractmethod
    def _reset(self, tasks: Tasks, episodes: int) -> Tensor: ...

    @abstractmethod
    def _step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, dict]: ...

    def _tensor(self, x: np.ndarray) -> Tensor:
        """A float32 tensor on the env's device from numpy values (envs that simulate in numpy)."""
        return torch.from_numpy(np.asarray(x, dtype=np.float32)).to(self.device)

    def check_actions(self, actions: Tensor, expected: tuple[int, ...]) -> None:
        if tuple(actions.shape) != expected:
            axes = "(tasks, episodes)" if self.num_actions else "(tasks, episodes, act_dim)"
            raise ValueError(f"actions must have shape {expected} {axes}, got {tuple(actions.shape)}")
