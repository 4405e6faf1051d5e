"""Meta-SGD (Li et al. 2017, arXiv:1707.09835): MAML whose inner step sizes are meta-learned.

The inner step is ``theta' = theta - alpha (elementwise) grad L(theta)`` with ``alpha`` a vector of
the same shape as ``theta`` (one step size per parameter), trained by the same outer objective as
``theta`` (shared/REFERENCES.md, Meta-SGD). Every inner step uses the same ``alpha``, initialized
at ``algo.inner_lr`` (the paper draws it at random in a small range; a constant start makes the
first iteration equal MAML's). Per-parameter sizes can carry more than a direction: on 2-D
navigation a fixed step moves the adapted policy a fixed length (docs/results.md), a learned
per-parameter step can scale with the goal's distance through the gradient's components.

The outer step differentiates through ``alpha`` by autograd (MAML's hand-written curvature
products assume a fixed step size), so TRPO's products come from double back-propagation over all
episodes (``algo.meta_optimizer.fvp_subsample`` must be 1).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dmrl.algos.maml import MAML
from dmrl.errors import require
from dmrl.keys import Rule, is_num
from dmrl.learner import AdaptationResult, MetaTestBudget
from dmrl.policies.gaussian_mlp import Params
from dmrl.tasks.distributions import Tasks


class MetaSGD(MAML):
    STEP_SIZE_KEYS = ("algo.meta_optimizer.max_kl", "algo.meta_optimizer.lr")
    KEYS = {"inner_lr": Rule(lambda v: is_num(v) and v > 0, "one number > 0 (Meta-SGD learns one step size per "
                             "parameter, shared by the inner steps, and starts it there)")}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # the optimizer it is handed, not a key of its own: checked where the two meet
        fraction = getattr(self.meta_optimizer, "fvp_subsample", 1.0)  # (TRPO's; Adam takes no curvature)
        require("algo.meta_optimizer.fvp_subsample", fraction == 1,
                "1.0 for algo=meta_sgd (its curvature is computed by autograd over every episode)", fraction)
        # parameter names hold dots, which a ParameterDict key may not: one list in params() order
        self.alpha = nn.ParameterList(nn.Parameter(torch.full_like(p.detach(), self.inner_lr))
                                      for p in self.policy.parameters())

    def step_size(self, k: int, differentiable: bool = False) -> Params:
        names = self.policy.params().keys()
        if differentiable:
            return dict(zip(names, self.alpha))
        return {name: a.detach() for name, a in zip(names, self.alpha)}

    def meta_parameters(self) -> list[Tensor]:
        return [*self.policy.parameters(), *self.alpha]

    def curvature(self, train, valid, outer_weights=None) -> None:
        return None  # autograd through the learned step sizes (module docstring)

    def hand_gradient_ok(self) -> bool:
        return False  # the products assume fixed step sizes

    def step_sizes(self, steps: int, later_lr_scale: float = 1.0, lr_scale: float = 1.0) -> list[Params]:
        alpha = self.step_size(0)
        return [{k: a * (1.0 if s == 0 else later_lr_scale) * lr_scale for k, a in alpha.items()} for s in range(steps)]

    def alpha_stats(self) -> dict[str, float]:
        flat = torch.cat([a.detach().reshape(-1) for a in self.alpha])
        return {"meta_sgd/alpha_mean": flat.mean().item(), "meta_sgd/alpha_abs_mean": flat.abs().mean().item(),
                "meta_sgd/alpha_min": flat.min().item(), "meta_sgd/alpha_max": flat.max().item()}

    def after_outer_step(self, train) -> dict[str, float]:
        return self.alpha_stats()

    def meta_test(self, tasks: Tasks, budget: MetaTestBudget) -> AdaptationResult:
        result = super().meta_test(tasks, budget)
        # eval.json: the learned sizes' mean per test step (steps after the first scaled), not the tensors
        mean = self.alpha_stats()["meta_sgd/alpha_mean"]
        scales = [(1.0 if s == 0 else budget.later_lr_scale) * budget.lr_scale
                  for s in range(len(result.extras["step_sizes"]))]
        result.extras["step_sizes"] = [mean * c for c in scales]
        return result

    STATE = (*MAML.STATE, "alpha")
