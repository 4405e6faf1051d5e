"""Proximal policy optimization (Schulman et al. 2017) as an outer update rule.

Several epochs of Adam steps on minibatches of whole sequences (for RL²: whole trials, so a
recurrent policy is re-run from its initial state), each minimizing the clipped surrogate (eq. 7)
plus a value loss and minus an entropy bonus, with the global gradient norm clipped. The
algorithm supplies ``evaluate(columns)``, which recomputes log-probabilities, entropies and values
for a subset of sequences; PPO itself knows nothing about policies or environments, so any
algorithm with on-policy batches can use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from dmrl.keys import BOOL, NON_NEGATIVE, POSITIVE, float_in, int_at_least
from dmrl.rl.returns import masked_mean

# evaluate(columns [m]) -> (log_probs [T, m], entropy [T, m], values [T, m])
Evaluate = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]


def clipped_surrogate(log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, clip: float) -> Tensor:
    """``min(r A, clip(r, 1 - eps, 1 + eps) A)`` per step (PPO eq. 7; to be maximized)."""
    ratio = torch.exp(log_probs - old_log_probs)
    return torch.minimum(ratio * advantages, ratio.clamp(1.0 - clip, 1.0 + clip) * advantages)


def surrogate(log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, clip: float | None) -> Tensor:
    """The importance-weighted surrogate ``r A`` (``clip`` None: TRPO's, MAML-VPG's) or PPO's clipped
    one, per step (to be maximized)."""
    if clip is None:
        return torch.exp(log_probs - old_log_probs) * advantages
    return clipped_surrogate(log_probs, old_log_probs, advantages, clip)


def surrogate_weights(log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, clip: float | None) -> Tensor:
    """``d surrogate / d log pi`` per step: ``r A``, and 0 where PPO's clipped term is the smaller one
    (its gradient vanishes there)."""
    ratio = torch.exp(log_probs - old_log_probs)
    weights = ratio * advantages
    if clip is None:
        return weights
    return torch.where(weights <= ratio.clamp(1.0 - clip, 1.0 + clip) * advantages, weights, torch.zeros_like(weights))


class PPO:
    KIND = "minibatch"  # minibatches of whole sequences with a value loss (RL²): ``update(evaluate, ...)``
    # Its config keys (dmrl.keys; checked by dmrl.config.validate before anything is built)
    KEYS = {
        "lr": POSITIVE,
        "epochs": int_at_least(1),
        "minibatches": int_at_least(1),
        "clip": float_in(0, 1, lo_open=True, hi_open=True),
        "value_coef": NON_NEGATIVE,
        "entropy_coef": NON_NEGATIVE,
        "max_grad_norm": POSITIVE,
        "anneal_lr": BOOL,
        "anneal_iterations": int_at_least(1),
        "anneal_entropy": BOOL,
        "adam_eps": POSITIVE,
    }

    def __init__(
        self,
        lr: float = 3e-4,
        epochs: int = 4,
        minibatches: int = 4,
        clip: float = 0.2,
        value_coef: float = 0.5,
        entropy_coef: float = 0.0,
        max_grad_norm: float = 0.5,
        anneal_lr: bool = False,
        anneal_iterations: int = 1,
        anneal_entropy: bool = False,
        adam_eps: float = 1e-5,
    ) -> None:
        self.lr, self.epochs, self.minibatches = float(lr), int(epochs), int(minibatches)
        self.clip, self.value_coef, self.entropy_coef = float(clip), float(value_coef), float(entropy_coef)
        self.max_grad_norm = float(max_grad_norm)
        self.anneal_lr, self.anneal_iterations = bool(anneal_lr), int(anneal_iterations)
        self.anneal_entropy = bool(anneal_entropy)
        self.adam_eps = float(adam_eps)
        self.params: list[Tensor] = []
        self.adam: torch.optim.Adam | None = None
        self.updates = 0  # completed calls of update(), for the learning-rate schedule

    def attach(self, params: Iterable[Tensor]) -> None:
        self.params = list(params)
        self.adam = torch.optim.Adam(self.params, lr=self.lr, eps=self.adam_eps)

    def _remaining(self) -> float:
        """Linear schedule: 1 before the first update, 0 after ``anneal_iterations`` updates."""
        return max(0.0, 1.0 - self.updates / self.anneal_iterations)

    def current_lr(self) -> float:
        return self.lr * self._remaining() if self.anneal_lr else self.lr

    def current_entropy_coef(self) -> float:
        return self.entropy_coef * self._remaining() if self.anneal_entropy else self.entropy_coef

    def update(self, evaluate: Evaluate, old_log_probs: Tensor, advantages: Tensor, returns: Tensor, mask: Tensor,
               generator: torch.Generator | None = None) -> dict[str, float]:
        """``epochs`` passes of ``minibatches`` Adam steps over the sequence axis of ``[T, M]`` data."""
        if self.adam is None:
            raise RuntimeError("PPO.attach(params) must be called before update()")
        lr, entropy_coef = self.current_lr(), self.current_entropy_coef()
        for group in self.adam.param_groups:
            group["lr"] = lr
        M = old_log_probs.shape[1]
        size = max(1, M // self.minibatches)
        names = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "grad_norm")
        # summed on the device in float64, one minibatch after the other (as Python floats would be), and
        # read once at the end: no host synchronization per minibatch
        sums = torch.zeros(len(names), dtype=torch.float64, device=old_log_probs.device)
        n = 0
        for _ in range(self.epochs):
            perm = torch.randperm(M, generator=generator, device=generator.device if generator else "cpu")
            perm = perm.to(old_log_probs.device)
            for start in range(0, M - size + 1, size):
                cols = perm[start : start + size]
                m, adv, old = mask[:, cols], advantages[:, cols], old_log_probs[:, cols]
                logp, entropy, values = evaluate(cols)
                policy_loss = -masked_mean(clipped_surrogate(logp, old, adv, self.clip), m, (0, 1))
                value_loss = 0.5 * masked_mean((values - returns[:, cols]).pow(2), m, (0, 1))
                ent = masked_mean(entropy, m, (0, 1))
                loss = policy_loss + self.value_coef * value_loss - entropy_coef * ent
                self.adam.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
                self.adam.step()
                with torch.no_grad():
                    log_ratio = logp - old
                    # The low-variance KL estimator (ratio - 1) - log ratio (Schulman's note "Approximating KL").
                    kl = masked_mean(log_ratio.exp() - 1 - log_ratio, m, (0, 1))
                    clipped = masked_mean(((log_ratio.exp() - 1).abs() > self.clip).to(m.dtype), m, (0, 1))
                sums += torch.stack([policy_loss.detach(), value_loss.detach(), ent, kl, clipped,
                                     grad_norm.to(kl.device)]).double()
                n += 1
        self.updates += 1
        stats = {k: v / max(n, 1) for k, v in zip(names, sums.tolist())}
        stats["lr"] = lr
        stats["entropy_coef"] = entropy_coef
        return stats

    def state_dict(self) -> dict:
        return {"adam": self.adam.state_dict() if self.adam else None, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        if state["adam"] is not None:
            self.adam.load_state_dict(state["adam"])
        self.updates = int(state["updates"])
