"""Policies: ``forward(obs, params=None)`` so that adapted parameters can be passed in functionally."""

from dmrl.policies.gaussian_mlp import GaussianMLPPolicy

__all__ = ["GaussianMLPPolicy"]
