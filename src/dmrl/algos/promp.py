"""ProMP: proximal meta-policy search (Rothfuss et al. 2019, "ProMP", Algorithm 1 and eq. 13).

MAML's structure with three changes (shared/REFERENCES.md, ProMP):

- the inner steps use the low-variance curvature (LVC) estimator, whose meta-gradient credits the
  pre-update policy's exploration (``algo.inner_estimator=lvc``, :meth:`MAML.inner_loss`);
- the outer objective is PPO's clipped surrogate on the post-adaptation episodes, optimized by
  several Adam steps per batch (``algo/meta_optimizer=adam_clip``, :class:`dmrl.optim.adam_outer.AdamOuter`);
- minus ``eta_k * KL(pi_old || pi)`` between the policy that sampled inner step ``k``'s episodes and
  the current parameters adapted ``k`` times, on those episodes (``k = 0``: the pre-update
  policies), which keeps every pre-update policy near the one whose samples the inner steps use.

``eta_k`` is fixed (``algo.kl_coef``) or, with ``algo.adaptive_kl``, halved when the step's KL falls
below ``kl_target / 1.5`` and doubled above ``1.5 x kl_target`` after each outer update, as in the
paper's code.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmrl.algos.maml import MAML
from dmrl.errors import require
from dmrl.keys import BOOL, NON_NEGATIVE, POSITIVE
from dmrl.policies.gaussian_mlp import Params
from dmrl.rl.returns import masked_mean
from dmrl.samplers.episodes import Episodes


def adapt_kl_coef(coef: Tensor, kl: Tensor, target: float) -> Tensor:
    """ProMP's adaptive rule per inner step: ``coef / 2`` where ``kl < target / 1.5``, ``coef x 2``
    where ``kl > 1.5 x target``, unchanged between.  # [steps]"""
    return torch.where(kl < target / 1.5, coef / 2, torch.where(kl > target * 1.5, coef * 2, coef))


class ProMP(MAML):
    STEP_SIZE_KEYS = ("algo.inner_lr", "algo.meta_optimizer.lr")
    KEYS = {"kl_coef": NON_NEGATIVE, "adaptive_kl": BOOL, "kl_target": POSITIVE}  # and MAML's

    def __init__(self, *args, kl_coef: float = 5e-4, adaptive_kl: bool = False, kl_target: float = 1e-2,
                 inner_estimator: str = "lvc", **kwargs) -> None:
        super().__init__(*args, inner_estimator=inner_estimator, **kwargs)
        # the optimizer it is handed, not a key of its own: checked where the two meet
        require("algo.meta_optimizer", self.meta_optimizer.KIND == "gradient", "adam_clip or adam (ProMP takes Adam steps "
                "on its clipped objective)", type(self.meta_optimizer).__name__)
        self.adaptive_kl, self.kl_target = bool(adaptive_kl), float(kl_target)
        # eta_k of each inner step; a tensor so that a checkpoint carries the adapted values
        self.kl_coef = torch.full((self.inner_steps,), float(kl_coef), dtype=torch.float64)
        self._inner_kls: Tensor | None = None  # KL of each inner step at the last objective evaluation

    def inner_kls(self, train: list[tuple[Episodes, Tensor]], sampled_with: list[Params],
                  before: list[Params]) -> Tensor:
        """Mean ``KL(pi_sampled || pi_current)`` over each inner step's episodes.  # [steps]"""
        kls = []
        for (ep, _), old, new in zip(train, sampled_with, before):
            with torch.no_grad():
                old_mean, old_log_std, _ = self.log_probs(old, ep)
            mean, log_std, _ = self.log_probs(new, ep)
            kl = self.policy.kl(old_mean, old_log_std, mean, log_std)
            kls.append(masked_mean(kl, ep.mask, (0, 2)).mean())
        return torch.stack(kls)

    def outer_penalty(self, train: list[tuple[Episodes, Tensor]], sampled_with: list[Params],
                      before: list[Params]) -> Tensor:
        kls = self.inner_kls(train, sampled_with, before)
        self._inner_kls = kls.detach()
        return (self.kl_coef.to(kls.dtype).to(kls.device) * kls).sum()

    def after_outer_step(self, train: list[tuple[Episodes, Tensor]]) -> dict[str, float]:
        """Adapt the KL coefficients to the KLs of the updated parameters (the optimizer's last
        objective evaluation), and log both."""
        if self._inner_kls is None:  # the outer step never evaluated the objective
            return {}
        kls, self._inner_kls = self._inner_kls.to("cpu", torch.float64), None
        if self.adaptive_kl:
            self.kl_coef = adapt_kl_coef(self.kl_coef, kls, self.kl_target)
        metrics = {}
        for k in range(self.inner_steps):
            metrics[f"promp/inner_kl_step{k}"] = float(kls[k])
            metrics[f"promp/kl_coef_step{k}"] = float(self.kl_coef[k])
        return metrics

    STATE = (*MAML.STATE, "kl_coef")
