"""The batched environment interface every task family implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
from torch import Tensor

from dmrl.errors import ConfigError
from dmrl.tasks.distributions import Tasks


class BatchedEnv(ABC):
    """``tasks x episodes`` independent episodes advanced together by one ``step`` call.

    ``reset(tasks, episodes)`` starts ``episodes`` episodes of each of the ``N`` tasks and returns
    observations ``[N, episodes, obs_dim]``; ``step(actions [N, episodes, act_dim])`` returns
    ``(obs, reward [N, episodes], done [N, episodes])``. An episode that is done stays done until
    the next ``reset``; the sampler masks whatever it reports afterwards.

    Envs with randomness of their own (initial-state noise) draw it from ``self.rng``, seeded by
    ``seed()`` and saved in checkpoints through ``state_dict()``.
    """

    obs_dim: int
    act_dim: int  # continuous: action dimensions; discrete: 1
    horizon: int
    num_actions: int | None = None  # discrete envs: actions are integers in [0, num_actions), shape [N, B]

    def __init__(self, horizon: int, device: str | torch.device = "cpu") -> None:
        if int(horizon) < 1:
            raise ConfigError(f"env.horizon must be an integer >= 1, got {horizon}")
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

    @abstractmethod
    def reset(self, tasks: Tasks, episodes: int) -> Tensor: ...

    @abstractmethod
    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]: ...

    def check_actions(self, actions: Tensor, expected: tuple[int, ...]) -> None:
        if tuple(actions.shape) != expected:
            axes = "(tasks, episodes)" if self.num_actions else "(tasks, episodes, act_dim)"
            raise ValueError(f"actions must have shape {expected} {axes}, got {tuple(actions.shape)}")
