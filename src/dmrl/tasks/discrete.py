"""Task distributions of the discrete families: Bernoulli bandits and random tabular MDPs.

Both follow Duan et al. 2016 (RL², arXiv:1611.02779): section 3.1 draws each arm's success
probability from U[0, 1]; section 3.2 draws, for every (state, action), a reward mean from
N(1, 1) and a next-state distribution from a flat Dirichlet.
"""

from __future__ import annotations

import numpy as np

from dmrl.keys import FINITE, CrossCheck, float_in, int_at_least, number_above, number_at_least
from dmrl.tasks.distributions import Tasks, TaskStream


class BernoulliBandits(TaskStream):
    """``{"p": [n, arms]}``: each arm pays 1 with probability ``p ~ U[low, high]``, else 0 (RL² §3.1)."""

    # Its config keys (dmrl.keys; checked by dmrl.config.validate before anything is built)
    KEYS = {"arms": int_at_least(2), "low": float_in(0, 1), "high": float_in(0, 1)}  # probabilities
    CROSS_CHECKS = (CrossCheck(("low", "high"), lambda low, high: low <= high,
                               "{at}low must be <= {at}high, got low={low} high={high}"),)

    def __init__(self, arms: int, low: float = 0.0, high: float = 1.0) -> None:
        self.arms = int(arms)
        self.low, self.high = float(low), float(high)

    def draw(self, n: int, rng: np.random.Generator) -> Tasks:
        return {"p": rng.uniform(self.low, self.high, size=(n, self.arms)).astype(np.float32)}


class RandomMDPs(TaskStream):
    """Random tabular MDPs (RL² §3.2): ``reward_mean [n, S, A] ~ N(reward_mean, reward_mean_std^2)``
    and ``transitions [n, S, A, S]``, each row ``~ Dirichlet(dirichlet_alpha * 1)``.

    The rows are normalised in float64 before the cast, so each float32 row sums to 1 up to rounding.
    """

    # Its config keys (dmrl.keys; checked by dmrl.config.validate before anything is built)
    KEYS = {
        "states": int_at_least(1),
        "actions": int_at_least(1),
        "reward_mean": FINITE,
        "reward_mean_std": number_at_least(0, finite=True),
        "dirichlet_alpha": number_above(0, finite=True),
    }

    def __init__(self, states: int = 10, actions: int = 5, reward_mean: float = 1.0, reward_mean_std: float = 1.0,
                 dirichlet_alpha: float = 1.0) -> None:
        self.states, self.actions = int(states), int(actions)
        self.reward_mean, self.reward_mean_std = float(reward_mean), float(reward_mean_std)
        self.dirichlet_alpha = float(dirichlet_alpha)

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
