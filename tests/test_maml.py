"""MAML's meta-gradient and adaptation, checked with numbers on tiny problems."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from conftest import make_maml


def capture_objective(algo):
    """Run one meta-step but capture the TRPO objective instead of stepping."""
    captured = {}

    def fake_step(params, objective, fvp=None, gradient=None):
        captured.update(params=params, objective=objective, fvp=fvp)
        return {"loss_before": 0.0, "loss_after": 0.0, "kl": 0.0, "ls_steps": 0, "step_accepted": 0.0, "grad_norm": 0.0}

    algo.meta_optimizer.step = fake_step
    algo.meta_step()
    return captured["params"], captured["objective"], captured["fvp"]


@pytest.mark.parametrize("first_order,inner_steps", [(False, 1), (False, 2), (True, 1)])
def test_meta_gradient_against_finite_differences(float64, first_order, inner_steps):
    algo = make_maml(meta_batch=2, episodes=3, horizon=5, hidden=(4,), first_order=first_order, inner_steps=inner_steps)
    algo.inner_lr = 0.5  # a large inner step makes the second-order terms matter
    params, objective, _ = capture_objective(algo)
    loss, _ = objective(True)
    grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])
    theta = parameters_to_vector(params).detach().clone()
    g = torch.Generator().manual_seed(0)
    eps = 1e-6
    for _ in range(3):
        v = torch.randn(theta.shape, generator=g)
        with torch.no_grad():
            vector_to_parameters(theta + eps * v, params)
        up = objective(False)[0].item()
        with torch.no_grad():
            vector_to_parameters(theta - eps * v, params)
        down = objective(False)[0].item()
        with torch.no_grad():
            vector_to_parameters(theta, params)
        fd = (up - down) / (2 * eps)
        analytic = torch.dot(grad, v).item()
        if first_order:
            continue  # the first-order gradient deliberately differs from the true derivative
        assert analytic == pytest.approx(fd, rel=1e-5, abs=1e-9)
    if first_order:  # ... but only by the second-order terms: it matches FOMAML's definition
        assert grad.abs().sum() > 0


def test_second_order_differs_from_first_order(float64):
    grads = []
    for first_order in (False, True):
        algo = make_maml(meta_batch=2, episodes=3, horizon=5, hidden=(4,), first_order=first_order)
        algo.inner_lr = 0.5
        params, objective, _ = capture_objective(algo)
        grads.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(objective(True)[0], params)]))
    assert not torch.allclose(grads[0], grads[1], rtol=1e-3)


def test_batched_inner_step_equals_per_task_loop():
    algo = make_maml(meta_batch=3, episodes=4, horizon=6)
    tasks = algo.sample_tasks()
    p = algo._detached(algo.per_task())
    ep = algo.sampler.sample(tasks, p)
    adv = algo.advantages(ep)
    fast = algo.adapt(p, ep, adv, create_graph=False)
    theta = algo.policy.params()
    for i in range(3):
        one = {k: v.detach().unsqueeze(0).requires_grad_() for k, v in theta.items()}
        from dmrl.samplers.episodes import Episodes

        ep_i = Episodes(ep.obs[:, i : i + 1], ep.actions[:, i : i + 1], ep.rewards[:, i : i + 1], ep.mask[:, i : i + 1])
        loss = algo.inner_loss(one, ep_i, adv[:, i : i + 1]).sum()
        grads = torch.autograd.grad(loss, list(one.values()))
        for (k, v), gk in zip(one.items(), grads):
            assert torch.allclose(fast[k][i], (v - algo.inner_lr * gk)[0], atol=1e-6), k


def test_adaptation_improves_return_on_a_fixed_task():
    """One inner step with a big batch must raise the return of the sampled tasks (a real learning signal)."""
    algo = make_maml(meta_batch=4, episodes=64, horizon=20, hidden=(16, 16))
    algo.inner_lr = 0.5
    tasks = algo.sample_tasks()
    curve = algo.adaptation_curve(tasks, steps=1)
    assert curve.shape == (2, 4)
    assert curve[1].mean() > curve[0].mean()


def test_adaptation_curve_takes_the_evaluation_step_sizes():
    """Later test-time steps use ``inner_lr x later_lr_scale`` (the MAML paper: 0.1, then 0.05):
    the curve equals sampling and adapting by hand with those step sizes."""
    algo = make_maml(meta_batch=3, episodes=5, horizon=10)
    tasks = algo.sample_tasks()
    assert algo.step_sizes(3, 0.5) == [0.1, 0.05, 0.05] and algo.step_sizes(2) == [0.1, 0.1]
    algo.sampler.seed(11)
    curve = algo.adaptation_curve(tasks, steps=3, later_lr_scale=0.5)
    algo.sampler.seed(11)
    p, expected = algo._detached(algo.per_task()), []
    for lr in (0.1, 0.05, 0.05, None):
        ep = algo.sampler.sample(tasks, p)
        expected.append(ep.task_returns.numpy())
        if lr is not None:
            grads = torch.autograd.grad(algo.inner_loss(p, ep, algo.advantages(ep)).sum(), list(p.values()))
            p = {k: (v - lr * g).detach().requires_grad_() for (k, v), g in zip(p.items(), grads)}
    assert curve.shape == (4, 3)
    assert np.allclose(curve, np.stack(expected), atol=1e-5)
    algo.sampler.seed(11)
    same_size = algo.adaptation_curve(tasks, steps=3)  # scale 1: a different curve after step 1
    assert np.allclose(same_size[:2], curve[:2], atol=1e-5) and not np.allclose(same_size[2:], curve[2:])


def test_lvc_inner_loss_adds_the_score_outer_products_to_the_hessian(float64):
    """ProMP's LVC: same inner gradient as MAML's loss; its Hessian is MAML's minus the
    advantage-weighted sum of score outer products, ``-sum_s w_s A_s g_s g_s^T`` (g_s = grad log pi)."""
    algo = make_maml(meta_batch=1, episodes=3, horizon=4, hidden=(3,))
    tasks = algo.sample_tasks()
    params = algo._detached(algo.per_task())
    ep = algo.sampler.sample(tasks, params)
    adv = algo.advantages(ep)
    names = list(params)
    v = {k: torch.randn_like(p) for k, p in params.items()}

    def grad_and_hvp(lvc: bool):
        algo.lvc = lvc
        g = torch.autograd.grad(algo.inner_loss(params, ep, adv).sum(), [params[k] for k in names], create_graph=True)
        hv = torch.autograd.grad(sum((gi * v[k]).sum() for gi, k in zip(g, names)), [params[k] for k in names])
        return [gi.detach() for gi in g], hv

    g_vpg, h_vpg = grad_and_hvp(False)
    g_lvc, h_lvc = grad_and_hvp(True)
    for a, b in zip(g_vpg, g_lvc):
        assert torch.allclose(a, b, atol=1e-12)

    # the extra term, sample by sample: w_s = mask / (number of live steps) for this single task
    _, _, logp = algo.log_probs(params, ep)
    mask = ep.mask[:, 0]
    w = mask / mask.sum()
    extra = [torch.zeros_like(params[k]) for k in names]
    for t, b in torch.nonzero(mask, as_tuple=False).tolist():
        score = torch.autograd.grad(logp[t, 0, b], [params[k] for k in names], retain_graph=True)
        r = sum((s * v[k]).sum() for s, k in zip(score, names))
        for i, s in enumerate(score):
            extra[i] -= w[t, b] * adv[t, 0, b] * r * s
    for hl, hv, e in zip(h_lvc, h_vpg, extra):
        assert torch.allclose(hl - hv, e, atol=1e-10)
    assert max((e.abs().max() for e in extra)) > 1e-3  # the term is not negligible here
