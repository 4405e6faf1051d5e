"""Task distributions of the discrete families: Bernoulli bandits and random tabular MDPs.

Both follow Duan et al. 2016 (RL², arXiv:1611.02779): section 3.1 draws each arm's success
probability from U[0, 1]; section 3.2 draws, for every (state, action), a reward mean from
N(1, 1) and a next-state distribution from a flat Dirichlet.
"""

from __future__ import annotations

import numbers

import numpy as np

from dmrl.errors import ConfigError
from dmrl.tasks.distributions import Tasks, TaskStream


def _int_at_least(key: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(f"tasks.{key} must be an integer >= {low}, got {value!r}")
    return int(value)


def _number(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ConfigError(f"tasks.{key} must be a finite number, got {value!r}")
    return float(value)


class BernoulliBandits(TaskStream):
    """``{"p": [n, arms]}``: each arm pays 1 with probability ``p ~ U[low, high]``, else 0 (RL² §3.1)."""

    def __init__(self, arms: int, low: float = 0.0, high: float = 1.0) -> None:
        self.arms = _int_at_least("arms", arms, 2)
        self.low, self.high = _number("low", low), _number("high", high)
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise ConfigError(f"tasks.low and tasks.high must satisfy 0 <= low <= high <= 1 (they are "
                              f"probabilities), got low={low} high={high}")

    def draw(self, n: int, rng: np.random.Generator) -> Tasks:
        return {"p": rng.uniform(self.low, self.high, size=(n, self.arms)).astype(np.float32)}


class RandomMDPs(TaskStream):
    """Random tabular MDPs (RL² §3.2): ``reward_mean [n, S, A] ~ N(reward_mean, reward_mean_std^2)``
    and ``transitions [n, S, A, S]``, each row ``~ Dirichlet(dirichlet_alpha * 1)``.

    The rows are normalised in float64 before the cast, so each float32 row sums to 1 up to rounding.
    """

    def __init__(self, states: int = 10, actions: int = 5, reward_mean: float = 1.0, reward_mean_std: float = 1.0,
                 dirichlet_alpha: float = 1.0) -> None:
        self.states = _int_at_least("states", states, 1)
        self.actions = _int_at_least("actions", actions, 1)
        self.reward_mean = _number("reward_mean", reward_mean)
        self.reward_mean_std = _number("reward_mean_std", reward_mean_std)
        if self.reward_mean_std < 0:
            raise ConfigError(f"tasks.reward_mean_std must be >= 0, got {reward_mean_std}")
        self.dirichlet_alpha = _number("dirichlet_alpha", dirichlet_alpha)
        if self.dirichlet_alpha <= 0:
            raise ConfigError(f"tasks.dirichlet_alpha must be > 0, got {dirichlet_alpha}")

    def draw(self, n: int, rng: np.random.Generator) -> Tasks:
        S, A = self.states, self.actions
        reward_mean = rng.normal(self.reward_mean, self.reward_mean_std, size=(n, S, A))
        # Dirichlet(alpha) = normalised independent Gamma(alpha, 1) draws; numpy's dirichlet does
        # the same but loops in Python over the leading axes for small alpha.
        gammas = rng.standard_gamma(self.dirichlet_alpha, size=(n, S, A, S))  # [n, S, A, S]
        total = gammas.sum(-1, keepdims=True)
        # A row of all-zero draws (possible in float64 only for tiny alpha) becomes uniform.
        transitions = np.where(total > 0, gammas / np.where(total > 0, total, 1.0), 1.0 / S)
        return {"reward_mean": reward_mean.astype(np.float32), "transitions": transitions.astype(np.float32)}
