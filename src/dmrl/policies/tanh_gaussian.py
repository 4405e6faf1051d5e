"""Off-policy networks of SAC (Haarnoja et al. 2018) as PEARL uses them: a tanh-squashed Gaussian
actor and MLP critics, each taking the task latent ``z`` concatenated to its input.

The actor's log-probability includes the change of variables of the squashing:
``log pi(a) = log N(u; mu, sigma) - sum log(1 - tanh(u)^2 + eps)`` with ``a = tanh(u)`` (SAC,
appendix C; eps = 1e-6 as the reference code).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dmrl.keys import int_at_least, list_of

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # the reference's clamp of the actor's log-std
SQUASH_EPS = 1e-6


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, final_init: float = 3e-3) -> nn.Sequential:
    """ReLU MLP; the last layer starts near zero (uniform +-``final_init``), as the reference's."""
    sizes = [in_dim, *hidden]
    layers: list[nn.Module] = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(i, o), nn.ReLU()]
    last = nn.Linear(sizes[-1], out_dim)
    nn.init.uniform_(last.weight, -final_init, final_init)
    nn.init.uniform_(last.bias, -final_init, final_init)
    return nn.Sequential(*layers, last)


class TanhGaussianPolicy(nn.Module):
    """``a = tanh(u)``, ``u ~ N(mu(x), sigma(x))`` with ``x = [obs, z]``; actions in ``[-1, 1]``."""

    # Its config keys (dmrl.keys; obs_dim and act_dim come from the env)
    KEYS = {"hidden_sizes": list_of(int_at_least(1), "a list of integers >= 1 (hidden layer widths)", min_len=1)}

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int] = (300, 300, 300)) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.net = mlp(obs_dim, list(hidden_sizes), 2 * act_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and clamped log-std of the pre-squash Gaussian.  # [..., act_dim] each"""
        mean, log_std = self.net(x).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    @staticmethod
    def log_prob(u: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
        """``log pi(tanh(u))`` with the squashing correction.  # [...]"""
        gauss = (-0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        return gauss - torch.log(1 - torch.tanh(u) ** 2 + SQUASH_EPS).sum(-1)

    def sample(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """A reparameterized action and its log-probability, with the mean and log-std:
        ``(a, log_pi, mean, log_std)``."""
        mean, log_std = self(x)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        u = mean + log_std.exp() * noise
        return torch.tanh(u), self.log_prob(u, mean, log_std), mean, log_std

    @torch.no_grad()
    def act(self, x: Tensor, generator: torch.Generator | None = None, deterministic: bool = False) -> Tensor:
        if deterministic:
            return torch.tanh(self(x)[0])
        return self.sample(x, generator)[0]
