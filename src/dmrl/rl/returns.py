"""Discounted returns and generalized advantage estimation over masked episode batches.

All tensors are time-major: ``[T, ...]`` where the trailing axes are any batch shape
(``[T, tasks, episodes]`` in dmrl's samplers). ``mask[t] = 1`` while the episode is running; steps
after termination carry ``mask = 0`` and contribute nothing.

Both sums are computed as one product with an upper-triangular discount matrix instead of a
Python loop over time: for dmrl's horizons (100-200) the ``T x T`` matrix is tiny.
"""

from __future__ import annotations

import torch
from torch import Tensor


def discount_matrix(T: int, factor: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``D[t, k] = factor^(k - t)`` for ``k >= t``, else 0.  # [T, T]"""
    idx = torch.arange(T, device=device)
    powers = (idx[None, :] - idx[:, None]).to(dtype)
    return torch.where(powers >= 0, torch.tensor(factor, dtype=dtype, device=device) ** powers, 0.0)


def discounted_sum(x: Tensor, factor: float) -> Tensor:
    """``y_t = sum_{k>=t} factor^(k-t) x_k`` along the leading (time) axis."""
    D = discount_matrix(x.shape[0], factor, x.dtype, x.device)
    return torch.tensordot(D, x, dims=([1], [0]))


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """Reward-to-go ``G_t = sum_{k>=t} gamma^(k-t) r_k`` within each episode.  # [T, ...]

    Episodes end at their first ``mask = 0`` step and never restart within a batch, so summing the
    masked rewards to the end of the array stays inside the episode.
    """
    return discounted_sum(rewards * mask, gamma) * mask


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> Tensor:
    """Generalized advantage estimation (Schulman et al. 2016, eq. 16).  # [T, ...]

    ``values[t]`` estimates the return from state ``t``; the value after the last step of an episode
    (termination or time limit) is taken as zero, as in MAML's reference implementation.
    """
    values = values * mask
    next_values = torch.cat([values[1:], torch.zeros_like(values[:1])], dim=0)
    deltas = rewards * mask + gamma * next_values - values
    return discounted_sum(deltas, gamma * lam) * mask


def masked_mean(x: Tensor, mask: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Mean of ``x`` over ``dims`` counting only entries where ``mask`` is 1."""
    return (x * mask).sum(dims) / mask.sum(dims).clamp_min(1.0)


def normalize_per_task(advantages: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """Zero-mean, unit-variance advantages within each task.  # [T, tasks, episodes]"""
    mean = masked_mean(advantages, mask, (0, 2))[None, :, None]
    var = masked_mean((advantages - mean) ** 2, mask, (0, 2))[None, :, None]
    return (advantages - mean) / (var.sqrt() + eps) * mask
