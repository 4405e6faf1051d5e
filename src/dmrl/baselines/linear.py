"""Linear feature baseline fitted per task (Duan et al. 2016, "Benchmarking deep RL").

Features are ``[obs, obs^2, t, t^2, t^3, 1]`` with ``t = step / 100``, the choice of MAML's
reference code. Each task gets its own least-squares fit on its own episodes, all tasks solved in
one batched call.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmrl.keys import POSITIVE, int_at_least


class LinearFeatureBaseline:
    KEYS = {"reg_coeff": POSITIVE, "max_tries": int_at_least(1)}  # dmrl.keys

    def __init__(self, reg_coeff: float = 1e-5, max_tries: int = 5) -> None:
        self.reg_coeff = reg_coeff
        self.max_tries = max_tries
        self.weights: Tensor | None = None  # [tasks, features] of the last fit

    @staticmethod
    def features(obs: Tensor, mask: Tensor) -> Tensor:
        """``[T, tasks, episodes, 2 * obs_dim + 4]``, zero outside episodes."""
        T = obs.shape[0]
        t = (torch.arange(T, device=obs.device, dtype=obs.dtype) / 100.0).view(T, *([1] * (obs.dim() - 1)))
        t = t.expand(*obs.shape[:-1], 1)
        ones = torch.ones_like(t)
        feats = torch.cat([obs, obs.pow(2), t, t.pow(2), t.pow(3), ones], dim=-1)
        return feats * mask.unsqueeze(-1)

    def fit_predict(self, obs: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
        """Fit one linear model per task to the returns and predict values.  # [T, tasks, episodes]"""
        X = self.features(obs, mask).double()  # [T, N, B, F]
        y = (returns * mask).double()
        XtX = torch.einsum("tnbf,tnbg->nfg", X, X)
        Xty = torch.einsum("tnbf,tnb->nf", X, y)
        eye = torch.eye(XtX.shape[-1], dtype=XtX.dtype, device=XtX.device)
        reg = self.reg_coeff
        for _ in range(self.max_tries):
            w, info = torch.linalg.solve_ex(XtX + reg * eye, Xty)
            if not bool(info.any()) and bool(torch.isfinite(w).all()):
                break
            reg *= 10.0
        else:
            w = torch.zeros_like(Xty)  # degenerate data: fall back to no baseline rather than NaNs
        self.weights = w.float()
        values = torch.einsum("tnbf,nf->tnb", X, w)
        return values.to(returns.dtype) * mask

    def state_dict(self) -> dict:
        return {"reg_coeff": self.reg_coeff, "weights": self.weights}

    def load_state_dict(self, state: dict) -> None:
        self.reg_coeff = float(state["reg_coeff"])
        self.weights = state.get("weights")
