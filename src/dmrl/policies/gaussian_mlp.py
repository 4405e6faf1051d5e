"""MLP policy with a Gaussian head and a state-independent log standard deviation.

The forward pass is written functionally so the same module evaluates

* the meta-parameters, shared by every task: ``params[name]`` has the module's own shape, and
* per-task adapted parameters, stacked on a leading task axis: ``params[name]`` is ``[N, *shape]``
  and ``obs`` is ``[N, ..., obs_dim]``,

in a single batched call (``torch.matmul`` broadcasts over the task axis), so a sampler never
loops over tasks in Python.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmrl.keys import NUMBER, POSITIVE, int_at_least, list_of, one_of

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "elu": F.elu, "gelu": F.gelu}

Params = Mapping[str, Tensor]


def _linear(x: Tensor, weight: Tensor, bias: Tensor, batched: bool) -> Tensor:
    if not batched:
        return F.linear(x, weight, bias)
    n = weight.shape[0]
    flat = x.reshape(n, -1, x.shape[-1])  # [N, M, in]
    out = torch.baddbmm(bias.unsqueeze(1), flat, weight.transpose(1, 2))  # [N, M, out]
    return out.reshape(*x.shape[:-1], weight.shape[1])


class GaussianMLPPolicy(nn.Module):
    """``pi(a|s) = N(mu_theta(s), diag(exp(log_std)^2))`` (Finn et al. 2017 use [100, 100] ReLU)."""

    # Its config keys (dmrl.keys); obs_dim and act_dim are the env's, given by the learner's build
    KEYS = {
        "hidden_sizes": list_of(int_at_least(1), "a list of integers >= 1, e.g. [64,64] ([]: a linear policy)"),
        "activation": one_of(sorted(ACTIVATIONS)),
        "init_std": POSITIVE,
        "min_log_std": NUMBER,
    }

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        init_std: float = 1.0,
        min_log_std: float = math.log(1e-6),
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.activation = ACTIVATIONS[activation]
        self.min_log_std = min_log_std
        sizes = [obs_dim, *hidden_sizes]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.mu = nn.Linear(sizes[-1], act_dim)
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))
        for layer in [*self.layers, self.mu]:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def params(self) -> dict[str, Tensor]:
        """The meta-parameters as an ordered name -> tensor dict (the functional view)."""
        return dict(self.named_parameters())

    def forward(self, obs: Tensor, params: Params | None = None) -> tuple[Tensor, Tensor]:
        """Mean and log-std of the action distribution.  # [..., act_dim] each"""
        p = self.params() if params is None else params
        batched = p["mu.weight"].dim() == 3
        h = obs
        for i in range(len(self.layers)):
            h = self.activation(_linear(h, p[f"layers.{i}.weight"], p[f"layers.{i}.bias"], batched))
        mean = _linear(h, p["mu.weight"], p["mu.bias"], batched)
        log_std = p["log_std"].clamp_min(self.min_log_std)
        if batched:  # [N, act] -> [N, 1, ..., 1, act] to broadcast against mean
            log_std = log_std.reshape(log_std.shape[0], *([1] * (mean.dim() - 2)), log_std.shape[-1])
        return mean, log_std.expand_as(mean)

    @staticmethod
    def sample(mean: Tensor, log_std: Tensor, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + log_std.exp() * noise

    @staticmethod
    def log_prob(mean: Tensor, log_std: Tensor, actions: Tensor) -> Tensor:
        """``log pi(a|s)`` summed over action dimensions.  # [...]"""
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    @staticmethod
    def kl(mean_p: Tensor, log_std_p: Tensor, mean_q: Tensor, log_std_q: Tensor) -> Tensor:
        """``KL(p || q)`` between diagonal Gaussians, summed over action dimensions.  # [...]"""
        var_p, var_q = (2 * log_std_p).exp(), (2 * log_std_q).exp()
        return (log_std_q - log_std_p + (var_p + (mean_p - mean_q).pow(2)) / (2 * var_q) - 0.5).sum(-1)
