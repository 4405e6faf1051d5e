"""Trust-region policy optimization as the outer update rule (Schulman et al. 2015, appendix C).

``step`` takes the parameters and an ``objective(create_graph) -> (surrogate loss, mean KL)``
closure; for MAML the closure re-runs the inner adaptation, so the step differentiates through it.
The curvature (Hessian of the mean KL at the current parameters) is used only through products
with a vector; by default they come from double back-propagation through the objective's KL,
and an algorithm that knows a cheaper exact product passes its own ``fvp``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from dmrl.errors import NonFiniteError
from dmrl.keys import NON_NEGATIVE, POSITIVE, float_in, int_at_least
from dmrl.optim.conjugate_gradient import conjugate_gradient

Objective = Callable[[bool], tuple[Tensor, Tensor]]
VectorProduct = Callable[[Tensor], Tensor]
Gradient = Callable[[], tuple[Tensor, Tensor]]


def _flat(grads: Sequence[Tensor]) -> Tensor:
    return torch.cat([g.reshape(-1) for g in grads])


def kl_hessian_vector_product(kl: Tensor, params: Sequence[Tensor]) -> VectorProduct:
    """``v -> (d^2 kl / d params^2) v`` by double back-propagation (Pearlmutter 1994)."""
    kl_grad = _flat(torch.autograd.grad(kl, params, create_graph=True))
    return lambda v: _flat(torch.autograd.grad(torch.dot(kl_grad, v), params, retain_graph=True))


class TRPO:
    KIND = "trust_region"  # takes curvature products (fvp) and a hand-computed gradient where a learner has them
    clip = None  # the surrogate it steps on is the plain importance-weighted one
    # Its config keys (dmrl.keys; checked by dmrl.config.validate before anything is built)
    KEYS = {
        "max_kl": POSITIVE,
        "cg_iters": int_at_least(1),
        "cg_damping": NON_NEGATIVE,
        "ls_max_steps": int_at_least(1),
        "ls_backtrack_ratio": float_in(0, 1, lo_open=True, hi_open=True),
        "fvp_subsample": float_in(0, 1, lo_open=True),
    }

    def __init__(
        self,
        max_kl: float = 1e-2,
        cg_iters: int = 10,
        cg_damping: float = 1e-5,
        ls_max_steps: int = 15,
        ls_backtrack_ratio: float = 0.8,
        fvp_subsample: float = 1.0,
    ) -> None:
        self.max_kl = float(max_kl)
        # Fraction of the batch the curvature products see (Schulman's TRPO used 10%); the
        # algorithm that builds the products applies it, the gradient always uses every sample.
        self.fvp_subsample = float(fvp_subsample)
        self.cg_iters = int(cg_iters)
        self.cg_damping = float(cg_damping)
        self.ls_max_steps = int(ls_max_steps)
        self.ls_backtrack_ratio = float(ls_backtrack_ratio)

    def step(self, params: Sequence[Tensor], objective: Objective, fvp: VectorProduct | None = None,
             gradient: Gradient | None = None) -> dict[str, float]:
        """One trust-region step on ``params`` in place; returns loss, KL and line-search figures.

        ``gradient`` (with ``fvp``): ``() -> (loss, flat gradient)`` at the current point from an
        algorithm that computes them exactly without autograd; ``objective`` then serves the line
        search only.
        """
        params = list(params)
        if gradient is not None and fvp is None:
            raise ValueError("TRPO.step: a hand-computed gradient needs its curvature products (fvp) too")
        if gradient is not None:
            loss, grad = gradient()
        else:
            loss, kl = objective(True)
        if not torch.isfinite(loss):
            raise NonFiniteError(f"surrogate loss is {loss.item()}")
        if gradient is None:
            grad = _flat(torch.autograd.grad(loss, params, retain_graph=fvp is None))
        if not torch.isfinite(grad).all():
            raise NonFiniteError("meta-gradient is not finite")
        if fvp is None:
            fvp = kl_hessian_vector_product(kl, params)

        def fisher_vector_product(v: Tensor) -> Tensor:
            return fvp(v) + self.cg_damping * v

        stepdir, curvature_stepdir = conjugate_gradient(fisher_vector_product, grad, self.cg_iters)
        shs = 0.5 * torch.dot(stepdir, curvature_stepdir)
        stats = {"loss_before": loss.item(), "grad_norm": grad.norm().item()}
        if not (torch.isfinite(shs) and shs > 0):
            return {**stats, "loss_after": loss.item(), "kl": 0.0, "ls_steps": 0, "step_accepted": 0.0}
        full_step = stepdir * math.sqrt(self.max_kl / shs.item())
        old = parameters_to_vector(params).detach().clone()
        for k in range(self.ls_max_steps):
            frac = self.ls_backtrack_ratio**k
            with torch.no_grad():
                vector_to_parameters(old - frac * full_step, params)
            new_loss, new_kl = (x.item() for x in objective(False))
            if math.isfinite(new_loss) and math.isfinite(new_kl) and new_loss < loss.item() and new_kl < self.max_kl:
                return {**stats, "loss_after": new_loss, "kl": new_kl, "ls_steps": k + 1, "step_accepted": 1.0}
        with torch.no_grad():
            vector_to_parameters(old, params)
        return {**stats, "loss_after": loss.item(), "kl": 0.0, "ls_steps": self.ls_max_steps, "step_accepted": 0.0}

    def state_dict(self) -> dict:
        return {}  # TRPO keeps no state between meta-iterations

    def load_state_dict(self, state: dict) -> None:
        pass
