"""Soft actor-critic's losses as PEARL's reference code computes them (Haarnoja et al. 2018, the
version with a state-value network; shared/REFERENCES.md, PEARL), as pure functions of tensors,
and the settings of its update (step sizes, Polyak rate, actor regularization).

- Q target: ``reward_scale * r + gamma * (1 - terminated) * V_target(s', z)``. A time-limit end
  (truncated) is not terminal: the target still bootstraps there.
- V target: ``min(Q1, Q2)(s, a~pi) - log pi(a|s)`` (no entropy coefficient: the reward scale sets
  the trade-off).
- actor: ``mean(log pi - min Q)`` plus ``mean_reg * mean(mu^2) + std_reg * mean(log_std^2)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmrl.keys import NON_NEGATIVE, POSITIVE, float_in


def q_target(rewards: Tensor, terminated: Tensor, next_v: Tensor, reward_scale: float, gamma: float) -> Tensor:
    return reward_scale * rewards + gamma * (1.0 - terminated) * next_v


def q_loss(q1: Tensor, q2: Tensor, target: Tensor) -> Tensor:
    """Sum of the two critics' mean squared errors (the reference's ``qf_loss``)."""
    return ((q1 - target) ** 2).mean() + ((q2 - target) ** 2).mean()


def v_loss(v: Tensor, min_q_new: Tensor, log_pi: Tensor) -> Tensor:
    return 0.5 * ((v - (min_q_new - log_pi).detach()) ** 2).mean()


def actor_loss(log_pi: Tensor, min_q_new: Tensor, mean: Tensor, log_std: Tensor, mean_reg: float,
               std_reg: float) -> Tensor:
    return (log_pi - min_q_new).mean() + mean_reg * (mean ** 2).mean() + std_reg * (log_std ** 2).mean()


@torch.no_grad()
def polyak(target: torch.nn.Module, source: torch.nn.Module, tau: float) -> None:
    """``target <- (1 - tau) target + tau source``."""
    for t, s in zip(target.parameters(), source.parameters()):
        t.mul_(1.0 - tau).add_(s, alpha=tau)


class SAC:
    """The settings of PEARL's update: one Adam step size for every network and the context encoder,
    the target network's Polyak rate, and the actor's L2 penalties."""

    KIND = "sac"
    # Its config keys (dmrl.keys; checked by dmrl.config.validate before anything is built)
    KEYS = {"lr": POSITIVE, "tau": float_in(0, 1, lo_open=True), "mean_reg": NON_NEGATIVE, "std_reg": NON_NEGATIVE}

    def __init__(self, lr: float = 3e-4, tau: float = 0.005, mean_reg: float = 1e-3, std_reg: float = 1e-3) -> None:
        self.lr, self.tau, self.mean_reg, self.std_reg = float(lr), float(tau), float(mean_reg), float(std_reg)

    def state_dict(self) -> dict:
        return {}  # the Adam states live with the learner's optimizers

    def load_state_dict(self, state: dict) -> None:
        pass
