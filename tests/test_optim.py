import math

import pytest
import torch

from dmrl.optim.conjugate_gradient import conjugate_gradient
from dmrl.optim.trpo import TRPO, kl_hessian_vector_product


def test_conjugate_gradient_solves_known_quadratic():
    g = torch.Generator().manual_seed(0)
    M = torch.randn(6, 6, dtype=torch.float64, generator=g)
    A = M @ M.T + 6 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64, generator=g)
    x, Ax = conjugate_gradient(lambda v: A @ v, b, iters=6)  # exact in n steps for an n x n SPD matrix
    assert torch.allclose(x, torch.linalg.solve(A, b), atol=1e-8)
    x2, Ax2 = conjugate_gradient(lambda v: A @ v, b, iters=2)
    assert torch.allclose(Ax, A @ x, atol=1e-8) and torch.allclose(Ax2, A @ x2, atol=1e-8)
    # fewer iterations: still a descent on the quadratic 0.5 x'Ax - b'x
    f = lambda x: 0.5 * x @ A @ x - b @ x  # noqa: E731
    assert f(x2) < f(torch.zeros(6, dtype=torch.float64))


def test_hessian_vector_product_against_finite_differences():
    torch.manual_seed(0)
    w = torch.randn(5, dtype=torch.float64, requires_grad=True)
    X = torch.randn(20, 5, dtype=torch.float64)

    def f(w):
        return torch.log1p(torch.exp(X @ w)).mean() + 0.1 * (w**4).sum()

    hvp = kl_hessian_vector_product(f(w), [w])
    v = torch.randn(5, dtype=torch.float64)
    eps = 1e-5

    def grad_at(x):
        x = x.detach().requires_grad_()
        return torch.autograd.grad(f(x), x)[0]

    fd = (grad_at(w + eps * v) - grad_at(w - eps * v)) / (2 * eps)
    assert torch.allclose(hvp(v), fd, atol=1e-7)


def _trpo_problem(target_scale: float):
    """A Gaussian 'policy' whose mean is the parameter vector: KL(old || new) = 0.5 ||dw||^2."""
    w = torch.zeros(3, requires_grad=True)
    w_old = w.detach().clone()
    target = torch.tensor([1.0, -2.0, 0.5]) * target_scale

    def objective(create_graph: bool):
        loss = ((w - target) ** 2).sum()
        kl = 0.5 * ((w - w_old) ** 2).sum()
        return loss, kl

    return w, objective


def test_line_search_never_exceeds_max_kl():
    for max_kl in (1e-4, 1e-2, 0.5):
        w, objective = _trpo_problem(1.0)
        stats = TRPO(max_kl=max_kl, cg_iters=10, ls_max_steps=15).step([w], objective)
        assert stats["step_accepted"] == 1.0
        kl = 0.5 * (w.detach() ** 2).sum().item()
        assert kl < max_kl
        assert stats["kl"] == pytest.approx(kl, rel=1e-4, abs=1e-9)
        assert stats["loss_after"] < stats["loss_before"]
        # the full natural step is scaled to the KL boundary: 0.5 s'Hs = max_kl
        assert kl > max_kl * 0.8**2 * 0.99


def test_line_search_rejects_steps_that_do_not_improve():
    w = torch.zeros(2, requires_grad=True)
    calls = []

    def objective(create_graph: bool):
        calls.append(create_graph)
        loss = (w * torch.tensor([1.0, 1.0])).sum()
        if not create_graph:  # every trial step looks worse (e.g. a noisy surrogate)
            loss = loss.detach() * 0 + 1.0
        kl = 0.5 * (w**2).sum()
        return loss, kl

    stats = TRPO(max_kl=0.01, ls_max_steps=5).step([w], objective)
    assert stats["step_accepted"] == 0.0 and stats["ls_steps"] == 5
    assert torch.equal(w.detach(), torch.zeros(2))  # parameters restored
    assert calls.count(False) == 5
    assert math.isfinite(stats["loss_after"])
