"""Classic (non-meta-learned) references for the discrete families, acting in the same envs.

``classic_baselines(env, n)`` gives ``{name: run}`` for a :class:`~dmrl.envs.Bandit` or a
:class:`~dmrl.envs.TabularMDP` (nothing for other envs), each ``run(env, tasks, n, seed)``
returning per-episode returns ``[N, n]`` of one trial per task; ``run_classic`` runs them all.
:class:`UniformPolicy` is the one reference for every env, discrete or continuous
(``dmrl-eval env=ENV policy=random``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dmrl.classic.bandit import bandit_baselines
from dmrl.classic.tabular import tabular_baselines
from dmrl.classic.uniform import UniformPolicy
from dmrl.envs.bandit import Bandit
from dmrl.envs.base import BatchedEnv
from dmrl.envs.tabular_mdp import TabularMDP
from dmrl.tasks.distributions import Tasks


def classic_baselines(env: BatchedEnv, n: int | None = None) -> dict[str, Callable[..., np.ndarray]]:
    """The baselines that apply to ``env``; with ``n`` (pulls or episodes per trial), only those
    that can run that long (the exact Bayes-optimal bandit policy needs a small DP table)."""
    if isinstance(env, Bandit):
        return bandit_baselines(env.arms, n)
    if isinstance(env, TabularMDP):
        return tabular_baselines()
    return {}


def run_classic(env: BatchedEnv, tasks: Tasks, n: int, seed: int) -> dict[str, np.ndarray]:
    """Per-episode returns ``[N, n]`` of every applicable baseline, each from the same ``seed``."""
    return {name: run(env, tasks, n, seed) for name, run in classic_baselines(env, n).items()}


__all__ = ["UniformPolicy", "classic_baselines", "run_classic"]
