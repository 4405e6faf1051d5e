"""The hand-written curvature products of MAML-TRPO against autograd and finite differences.

``MAML.curvature`` must give exactly (to round-off) the products that double back-propagation
through the whole objective gives: the Hessian, with respect to the meta-parameters, of the mean
KL between the old and the new adapted policies, differentiated through the inner adaptation
(third order when second-order MAML); and the meta-gradient that autograd gives through the
inner adaptation.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch.nn.utils import parameters_to_vector, vector_to_parameters

import dmrl.algos.maml_curvature as curvature
from dmrl.algos.maml import MAML
from dmrl.baselines.linear import LinearFeatureBaseline
from dmrl.envs.point_nav import PointNav
from dmrl.errors import ConfigError
from dmrl.optim.trpo import TRPO, kl_hessian_vector_product
from dmrl.policies.gaussian_mlp import GaussianMLPPolicy
from dmrl.rl.returns import masked_mean
from dmrl.samplers.batched import BatchedSampler
from dmrl.samplers.episodes import Episodes
from dmrl.tasks.distributions import UniformBox, task_rng


@pytest.fixture(autouse=True)
def _one_thread():
    """These problems are tiny: a second BLAS thread only costs synchronisation (a lot of it when
    the machine is busy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _Capture:
    """Stands in for the meta-optimizer (a trust-region one, as TRPO): keeps what ``meta_step`` hands
    it, changes nothing."""

    KIND, clip = "trust_region", None

    def __init__(self, fvp_subsample: float = 1.0) -> None:
        self.fvp_subsample = fvp_subsample

    def step(self, params, objective, fvp, gradient=None):
        self.params, self.objective, self.fvp, self.gradient = list(params), objective, fvp, gradient
        return {}


def _maml(activation="tanh", hidden=(8, 8), inner_steps=1, first_order=False, optimizer=None, seed=0,
          device="cpu", tasks=3, episodes=4, horizon=8, inner_estimator="vpg") -> MAML:
    torch.manual_seed(seed)
    env = PointNav(horizon=horizon, device=device)
    policy = GaussianMLPPolicy(2, 2, hidden, activation).to(device)
    return MAML(policy, LinearFeatureBaseline(), BatchedSampler(env, policy, episodes, seed=seed),
                optimizer or _Capture(), UniformBox("goal", -0.5, 0.5, 2), task_rng(seed, "train"),
                meta_batch_size=tasks, fast_batch_size=episodes, inner_steps=inner_steps,
                first_order=first_order, inner_estimator=inner_estimator)


def _captured_step(algo: MAML) -> tuple[_Capture, dict]:
    """Run one meta-step; return the captured optimizer call and the episodes fed to the fvp."""
    seen = {}
    original = algo.curvature

    def record(train, valid, outer_weights=None):
        seen.update(train=train, valid=valid)
        return original(train, valid, outer_weights)

    algo.curvature = record
    algo.meta_step()
    return algo.meta_optimizer, seen


def _ragged(algo: MAML, seed: int, empty_first_task: bool = False) -> None:
    """Make the sampler's episodes end at random lengths (a task with no live step at all if
    ``empty_first_task``), as early goal hits and varied lengths do."""
    sample, g = algo.sampler.sample, torch.Generator().manual_seed(seed)

    def ragged(*args, **kwargs):
        ep = sample(*args, **kwargs)
        T, N, B = ep.mask.shape
        length = torch.randint(0 if empty_first_task else 1, T + 1, (N, B), generator=g)
        if empty_first_task:
            length[0] = 0
        mask = ep.mask * (torch.arange(T)[:, None, None] < length[None]).to(ep.mask.dtype)
        return Episodes(ep.obs, ep.actions, ep.rewards * mask, mask)

    algo.sampler.sample = ragged


def _hand_and_autograd_gradients(cap: _Capture) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The captured hand-written (loss, meta-gradient) and autograd's through ``objective(True)``."""
    assert cap.gradient is not None, "the fast path should handle this policy"
    loss, grad = cap.gradient()
    ref_loss, _ = cap.objective(True)
    ref = torch.cat([x.reshape(-1) for x in torch.autograd.grad(ref_loss, cap.params)])
    return loss, grad, ref_loss, ref


def _assert_same_products(fvp, ref, n_params: int, device="cpu", tol=1e-5, vectors=3) -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(vectors):
        v = torch.randn(n_params, generator=g).to(device)
        fast, slow = fvp(v), ref(v)
        assert fast.shape == slow.shape and fast.dtype == slow.dtype
        err = (fast - slow).norm() / slow.norm()
        assert err < tol, f"relative error {err:.2e}"
        assert torch.allclose(fast, slow, rtol=tol, atol=tol * slow.abs().max().item())


def _check_against_autograd(algo: MAML, device="cpu") -> None:
    cap, _ = _captured_step(algo)
    assert cap.fvp is not None, "the fast path should handle this policy"
    _, kl = cap.objective(True)
    ref = kl_hessian_vector_product(kl, cap.params)
    _assert_same_products(cap.fvp, ref, sum(p.numel() for p in cap.params), device)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize(
    "inner_steps, first_order", [(1, False), (2, False), (1, True), (2, True)], ids=["so1", "so2", "fo1", "fo2"]
)
def test_fvp_equals_third_order_autograd(activation, inner_steps, first_order):
    _check_against_autograd(_maml(activation, inner_steps=inner_steps, first_order=first_order))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("inner_steps", [1, 2])
def test_lvc_fvp_equals_third_order_autograd(activation, inner_steps):
    """ProMP's LVC inner loss: the hand-written products include its extra Hessian term."""
    _check_against_autograd(_maml(activation, inner_steps=inner_steps, inner_estimator="lvc"))


@pytest.mark.parametrize(
    "activation, hidden, inner_steps",
    [("elu", (8, 8), 1), ("gelu", (8, 8), 2), ("tanh", (8,), 1), ("tanh", (5, 7, 6), 2), ("relu", (6, 5, 4), 1),
     ("tanh", (), 2)],
)
def test_fvp_other_activations_and_depths(activation, hidden, inner_steps):
    _check_against_autograd(_maml(activation, hidden=hidden, inner_steps=inner_steps))


def test_fvp_without_first_layer_contraction(monkeypatch):
    monkeypatch.setattr(curvature, "MAX_CONTRACTED_INPUTS", 0)  # the per-sample route for layer 0
    _check_against_autograd(_maml("tanh", inner_steps=2))


@pytest.mark.parametrize("obs_dim, act_dim, first_order", [(20, 5, False), (40, 3, False), (9, 6, True)])
def test_fvp_wide_observations_and_actions(obs_dim, act_dim, first_order):
    """Synthetic episodes (no environment) with other sizes than PointNav's 2 x 2."""
    torch.manual_seed(0)
    T, N, B, steps = 6, 3, 4, 2
    policy = GaussianMLPPolicy(obs_dim, act_dim, (10, 7), "tanh")
    algo = MAML(policy, LinearFeatureBaseline(), None, _Capture(), None, None, meta_batch_size=N,
                fast_batch_size=B, inner_steps=steps, first_order=first_order)

    def episodes():
        length = torch.randint(1, T + 1, (N, B))
        mask = (torch.arange(T)[:, None, None] < length[None]).float()
        return Episodes(torch.randn(T, N, B, obs_dim), 0.5 * torch.randn(T, N, B, act_dim), torch.zeros(T, N, B), mask)

    train = [(ep, torch.randn(T, N, B) * ep.mask) for ep in (episodes() for _ in range(steps))]
    valid = episodes()

    def adapted_dist():
        fast = algo.per_task()
        for ep, adv in train:
            fast = algo.adapt(fast, ep, adv, create_graph=not first_order)
        return algo.log_probs(fast, valid)[:2]

    old_mean, old_log_std = (t.detach() for t in adapted_dist())
    mean, log_std = adapted_dist()
    kl = masked_mean(policy.kl(old_mean, old_log_std, mean, log_std), valid.mask, (0, 2)).mean()
    params = list(policy.parameters())
    ref = kl_hessian_vector_product(kl, params)
    fvp = curvature.maml_products(policy, train, valid, algo.inner_lr, first_order).fvp
    _assert_same_products(fvp, ref, sum(p.numel() for p in params))


def test_fvp_in_task_chunks_and_with_finished_episodes():
    algo = _maml("tanh", inner_steps=2, tasks=4)
    _ragged(algo, seed=3, empty_first_task=True)
    cap, seen = _captured_step(algo)
    _, kl = cap.objective(True)
    ref = kl_hessian_vector_product(kl, cap.params)
    n = sum(p.numel() for p in cap.params)
    _assert_same_products(cap.fvp, ref, n)
    weights = torch.randn(seen["valid"].mask.shape, generator=torch.Generator().manual_seed(3)) * seen["valid"].mask
    whole, chunked = (curvature.maml_products(algo.policy, seen["train"], seen["valid"], algo.inner_lr, False,
                                              chunk=c, outer_weights=weights) for c in (None, 3))
    _assert_same_products(chunked.fvp, ref, n)
    assert torch.allclose(chunked.meta_gradient(), whole.meta_gradient(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("inner_steps, first_order", [(1, False), (2, False), (1, True)])
def test_fvp_against_finite_differences_of_the_kl_gradient(inner_steps, first_order):
    algo = _maml("tanh", inner_steps=inner_steps, first_order=first_order)
    _, seen = _captured_step(algo)
    policy = algo.policy.double()
    as64 = lambda ep: Episodes(*(t.double() for t in (ep.obs, ep.actions, ep.rewards, ep.mask)))  # noqa: E731
    train = [(as64(ep), adv.double()) for ep, adv in seen["train"]]
    valid = as64(seen["valid"])
    params = list(policy.parameters())
    theta = parameters_to_vector(params).detach().clone()

    def adapt():
        fast = algo.per_task()
        for ep, adv in train:
            fast = algo.adapt(fast, ep, adv, create_graph=True)
        return fast

    # first-order MAML differentiates theta' = theta + (inner steps taken as constants)
    offsets = {k: (v - algo.per_task()[k]).detach() for k, v in adapt().items()} if first_order else None

    def adapted_dist():
        fast = {k: v + offsets[k] for k, v in algo.per_task().items()} if first_order else adapt()
        return algo.log_probs(fast, valid)[:2]

    old_mean, old_log_std = (t.detach() for t in adapted_dist())

    def kl_grad(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            vector_to_parameters(x, params)
        mean, log_std = adapted_dist()
        kl = masked_mean(policy.kl(old_mean, old_log_std, mean, log_std), valid.mask, (0, 2)).mean()
        return parameters_to_vector(torch.autograd.grad(kl, params))

    fvp = curvature.maml_products(policy, train, valid, algo.inner_lr, first_order).fvp
    v = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    eps = 1e-5
    fd = (kl_grad(theta + eps * v) - kl_grad(theta - eps * v)) / (2 * eps)
    with torch.no_grad():
        vector_to_parameters(theta, params)
    assert torch.allclose(kl_grad(theta), torch.zeros_like(theta), atol=1e-12)  # KL is minimal here
    product = fvp(v)
    assert product.dtype == torch.float64
    assert (product - fd).norm() / fd.norm() < 1e-7
    assert torch.dot(v, product) > 0  # positive semi-definite: a Gauss-Newton form


@pytest.mark.parametrize(
    "inner_steps, first_order", [(1, False), (2, False), (1, True)], ids=["so1", "so2", "fo1"]
)
@pytest.mark.parametrize("inner_estimator", ["vpg", "lvc"])
def test_subsampled_fvp_is_the_curvature_of_the_first_episodes_at_the_full_batch_point(inner_steps, first_order,
                                                                                       inner_estimator):
    """``fvp_subsample``: every inner step still moves by its full-batch gradient, but the
    Jacobians of the steps and the KL's Fisher come from the first episodes of each task only."""
    algo = _maml("tanh", inner_steps=inner_steps, first_order=first_order, optimizer=_Capture(0.5), episodes=6,
                 inner_estimator=inner_estimator)
    cap, seen = _captured_step(algo)
    k = 3  # ceil(0.5 * 6)
    first = lambda ep: Episodes(ep.obs[:, :, :k], ep.actions[:, :, :k], ep.rewards[:, :, :k], ep.mask[:, :, :k])  # noqa: E731
    fast = algo.per_task()
    for ep, adv in seen["train"]:
        full = algo.adapt(fast, ep, adv, create_graph=False)  # the point: the full-batch step
        sub = algo.adapt(fast, first(ep), adv[:, :, :k], create_graph=not first_order)  # its Jacobian
        fast = {name: sub[name] + (full[name] - sub[name]).detach() for name in fast}
    valid = first(seen["valid"])
    mean, log_std, _ = algo.log_probs(fast, valid)
    kl = masked_mean(algo.policy.kl(mean.detach(), log_std.detach(), mean, log_std), valid.mask, (0, 2)).mean()
    ref = kl_hessian_vector_product(kl, cap.params)
    n = sum(p.numel() for p in cap.params)
    _assert_same_products(cap.fvp, ref, n)
    # and it is not the full-batch curvature
    full_fvp = curvature.maml_products(algo.policy, seen["train"], seen["valid"], algo.inner_lr, first_order).fvp
    v = torch.randn(n, generator=torch.Generator().manual_seed(4))
    assert (full_fvp(v) - cap.fvp(v)).norm() > 1e-3 * full_fvp(v).norm()


@pytest.mark.parametrize(
    "activation, inner_steps, first_order, inner_estimator, subsample",
    [("tanh", 1, False, "vpg", 1.0), ("tanh", 2, False, "vpg", 1.0), ("relu", 1, False, "vpg", 1.0),
     ("tanh", 2, True, "vpg", 1.0), ("tanh", 2, False, "lvc", 1.0), ("tanh", 1, False, "vpg", 0.5),
     ("gelu", 2, False, "lvc", 0.5)],
)
def test_meta_gradient_equals_autograd_through_the_inner_steps(float64, activation, inner_steps, first_order,
                                                               inner_estimator, subsample):
    """The hand-written meta-gradient (``J^T g`` by Hessian-vector products) and surrogate value
    equal autograd's through ``objective(True)``, also when the curvature is subsampled (the
    gradient always uses every episode) and with ragged episodes."""
    algo = _maml(activation, inner_steps=inner_steps, first_order=first_order, optimizer=_Capture(subsample),
                 inner_estimator=inner_estimator, episodes=6)
    _ragged(algo, seed=5)
    loss, grad, ref_loss, ref = _hand_and_autograd_gradients(_captured_step(algo)[0])
    assert loss.item() == pytest.approx(ref_loss.item(), abs=1e-12)
    assert grad.shape == ref.shape and ref.norm() > 0
    assert (grad - ref).norm() < 1e-9 * ref.norm()


@pytest.mark.parametrize("subsample", [1.0, 0.5])
def test_meta_gradient_in_float32_matches_autograd(subsample):
    """The production dtype: float32 round-off only (no conjugate gradient to amplify it)."""
    algo = _maml("tanh", inner_steps=1, optimizer=_Capture(subsample), episodes=6)
    loss, grad, ref_loss, ref = _hand_and_autograd_gradients(_captured_step(algo)[0])
    assert grad.dtype == torch.float32 and loss.item() == pytest.approx(ref_loss.item(), abs=1e-6)
    assert (grad - ref).norm() < 1e-4 * ref.norm()


def test_meta_step_takes_the_same_trpo_step_as_autograd(float64):
    """In float64: CG on a tiny problem amplifies float32 round-off past any tolerance that would
    still tell two different steps apart."""
    results = []
    for fast in (True, False):
        # damping well above round-off: CG on a near-singular tiny problem would amplify it
        algo = _maml("tanh", inner_steps=1, optimizer=TRPO(max_kl=0.05, cg_damping=0.1))
        if not fast:
            algo.curvature = lambda *args: None  # autograd: the meta-gradient and double back-propagation
        stats = algo.meta_step()
        results.append((parameters_to_vector(algo.policy.parameters()).detach(), stats))
    (p_fast, s_fast), (p_slow, s_slow) = results
    assert s_fast["meta_optim/step_accepted"] == s_slow["meta_optim/step_accepted"] == 1.0
    assert s_fast["meta_optim/ls_steps"] == s_slow["meta_optim/ls_steps"]
    assert torch.allclose(p_fast, p_slow, rtol=1e-5, atol=1e-6)


def test_unsupported_activation_falls_back_to_autograd():
    algo = _maml("tanh")
    algo.policy.activation = torch.sigmoid  # no derivative rules for it here
    cap, _ = _captured_step(algo)
    assert cap.fvp is None
    # a curvature subsample needs the hand-written products: refused in one line, not silently ignored
    algo = _maml("tanh", optimizer=_Capture(0.5))
    algo.policy.activation = torch.sigmoid
    with pytest.raises(ConfigError, match="algo.meta_optimizer.fvp_subsample"):
        algo.meta_step()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("inner_steps, first_order", [(2, False), (1, True)])
def test_fvp_on_cuda(inner_steps, first_order):
    _check_against_autograd(_maml("tanh", inner_steps=inner_steps, first_order=first_order, device="cuda"),
                            device="cuda")
