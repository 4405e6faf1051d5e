"""Policies: MLPs with ``forward(obs, params=None)`` for adapted parameters passed functionally
(MAML), and recurrent policies that adapt in their hidden state (RL²)."""

from dmrl.policies.gaussian_mlp import GaussianMLPPolicy
from dmrl.policies.recurrent import RecurrentPolicy
from dmrl.policies.tanh_gaussian import TanhGaussianPolicy

__all__ = ["GaussianMLPPolicy", "RecurrentPolicy", "TanhGaussianPolicy"]
