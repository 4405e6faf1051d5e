"""Adam on a meta-learner's outer objective: the outer rule of MAML-VPG, MAML-PPO and ProMP.

``step`` takes the meta-parameters and the same ``objective(create_graph) -> (loss, mean KL)``
closure TRPO takes, and makes ``steps`` Adam steps on the loss, re-running the closure (and so the
inner adaptation) before each. ``clip`` is the learner's business: the closure reads it from here
to build PPO's clipped surrogate (a number) or the plain importance-weighted one (``None``; with
one step its gradient is the policy gradient at the sampling point, MAML-VPG).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dmrl.errors import NonFiniteError
from dmrl.keys import POSITIVE, float_in, int_at_least, optional
from dmrl.optim.trpo import Gradient, Objective, VectorProduct


class AdamOuter:
    KIND = "gradient"  # what a learner may ask of it: a loss to descend, no curvature products
    # Its config keys (dmrl.keys; checked by dmrl.config.validate before anything is built)
    KEYS = {
        "lr": POSITIVE,
        "steps": int_at_least(1),
        "clip": optional(float_in(0, 1, lo_open=True, hi_open=True), "no clipping"),
        "max_grad_norm": optional(POSITIVE, "no clipping"),
        "adam_eps": POSITIVE,
    }

    def __init__(self, lr: float = 1e-3, steps: int = 1, clip: float | None = None,
                 max_grad_norm: float | None = None, adam_eps: float = 1e-8) -> None:
        self.lr, self.steps = float(lr), int(steps)
        self.clip = None if clip is None else float(clip)
        self.max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)
        self.adam_eps = float(adam_eps)
        self.optimizer: torch.optim.Adam | None = None
        self._pending: dict | None = None  # a checkpoint's Adam state, loaded when the parameters are known

    def _adam(self, params: list[Tensor]) -> torch.optim.Adam:
        if self.optimizer is None:
            self.optimizer = torch.optim.Adam(params, lr=self.lr, eps=self.adam_eps)
            if self._pending is not None:
                self.optimizer.load_state_dict(self._pending)
                self._pending = None
            for group in self.optimizer.param_groups:  # a resume may lower the step size (cli/train.py)
                group["lr"] = self.lr
        return self.optimizer

    def step(self, params: Sequence[Tensor], objective: Objective, fvp: VectorProduct | None = None,
             gradient: Gradient | None = None) -> dict[str, float]:
        """``steps`` Adam steps on ``objective``'s loss; ``gradient``, where the learner has one,
        gives ``(loss, flat gradient)`` at the current parameters without autograd (``fvp``: unused)."""
        params = list(params)
        adam = self._adam(params)
        loss_before = grad_norm = None
        for _ in range(self.steps):
            adam.zero_grad(set_to_none=True)
            if gradient is not None:
                loss, flat = gradient()
                for p, g in zip(params, torch.split(flat, [p.numel() for p in params])):
                    p.grad = g.reshape(p.shape).to(p.dtype).clone()
            else:
                loss, _ = objective(True)
                if torch.isfinite(loss):
                    loss.backward()
            if not torch.isfinite(loss):
                raise NonFiniteError(f"surrogate loss is {loss.item()}")
            if not all(torch.isfinite(p.grad).all() for p in params if p.grad is not None):
                raise NonFiniteError("meta-gradient is not finite")
            if self.max_grad_norm is not None:
                norm = torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
            else:
                norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
            if loss_before is None:
                loss_before, grad_norm = loss.item(), norm.item()
            adam.step()
        adam.zero_grad(set_to_none=True)
        loss_after, kl = (x.item() for x in objective(False))  # (the inner step needs autograd: no no_grad here)
        return {"loss_before": loss_before, "loss_after": loss_after, "kl": kl, "grad_norm": grad_norm}

    def state_dict(self) -> dict:
        if self.optimizer is not None:
            return {"adam": self.optimizer.state_dict()}
        return {"adam": self._pending} if self._pending is not None else {}

    def load_state_dict(self, state: dict) -> None:
        adam = state.get("adam")
        if adam is None:
            return
        if self.optimizer is not None:
            self.optimizer.load_state_dict(adam)
        else:
            self._pending = adam
