"""The gradient-based family beyond MAML-TRPO, each through the learner contract: ProMP, MAML with
Adam outer rules (VPG, PPO-clip), Meta-SGD, per-step inner step sizes, and the multitask / oracle
baselines. Numbers on tiny problems against hand computations and autograd."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from conftest import resume_equals_uninterrupted

from dmrl.algos.promp import adapt_kl_coef
from dmrl.build import build
from dmrl.config import CONF_DIR
from dmrl.errors import ConfigError
from dmrl.rl.returns import masked_mean

TINY = ["env.horizon=6", "algo.meta_batch_size=3", "algo.fast_batch_size=4", "algo.policy.hidden_sizes=[5]",
        "final_eval.num_tasks=0"]


def parts_for(*overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=["device=cpu", *TINY, *overrides])
    return build(cfg)


def capture(algo):
    """One meta-step with the outer step replaced by a recorder of its arguments."""
    seen = {}

    def fake_step(params, objective, fvp=None, gradient=None):
        seen.update(params=params, objective=objective, fvp=fvp, gradient=gradient)
        return {}

    algo.meta_optimizer.step = fake_step
    original = algo.sampler.sample
    batches = []

    def sample(*a, **kw):
        batches.append(original(*a, **kw))
        return batches[-1]

    algo.sampler.sample = sample
    algo.meta_step()
    seen["batches"] = batches
    return seen


def flat_grad(loss, params):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


def check_against_finite_differences(objective, params, rel=1e-5):
    loss, _ = objective(True)
    grad = flat_grad(loss, params)
    theta = parameters_to_vector(params).detach().clone()
    g = torch.Generator().manual_seed(1)
    for _ in range(2):
        v = torch.randn(theta.shape, generator=g, dtype=theta.dtype)
        values = []
        for sign in (1, -1):
            with torch.no_grad():
                vector_to_parameters(theta + sign * 1e-6 * v, params)
            values.append(objective(False)[0].item())
        with torch.no_grad():
            vector_to_parameters(theta, params)
        assert torch.dot(grad, v).item() == pytest.approx((values[0] - values[1]) / 2e-6, rel=rel, abs=1e-9)


# --- ProMP -------------------------------------------------------------------------------------------
def test_promp_objective_is_the_clipped_surrogate_plus_the_inner_kl_penalty_by_hand(float64):
    parts = parts_for("algo=promp", "algo.kl_coef=0.7", "algo.meta_optimizer.clip=0.2")
    algo = parts.algo
    seen = capture(algo)
    train_ep, valid = seen["batches"]
    theta0 = parameters_to_vector(algo.policy.parameters()).detach().clone()
    # move the parameters off the sampling point so that ratios, clipping and the KL are not trivial
    shift = 0.05 * torch.randn(theta0.shape, generator=torch.Generator().manual_seed(0), dtype=theta0.dtype)
    vector_to_parameters(theta0 + shift, list(algo.policy.parameters()))
    loss, _ = seen["objective"](False)

    # by hand: one LVC inner step from the shifted parameters, PPO's clip, the KL of the pre-update policies
    pol = algo.policy
    old = {k: v.detach() for k, v in zip(pol.params().keys(), torch.split(theta0, [p.numel() for p in
                                                                              pol.parameters()]))}
    old = {k: v.reshape(p.shape) for (k, v), p in zip(old.items(), pol.parameters())}

    def dist(params, ep):
        mean, log_std = pol(ep.obs, params)
        return mean, log_std, pol.log_prob(mean, log_std, ep.actions)  # [T, N, B]

    adv_train, adv_valid = algo.advantages(train_ep), algo.advantages(valid)
    theta = {k: v.detach().requires_grad_() for k, v in pol.params().items()}
    n = valid.mask.shape[1]
    adapted = []
    for i in range(n):
        mask = train_ep.mask[:, i]
        _, _, logp = dist(theta, train_ep)
        lvc = torch.exp(logp[:, i] - logp[:, i].detach())
        inner = -(lvc * adv_train[:, i] * mask).sum() / mask.sum()
        grads = torch.autograd.grad(inner, list(theta.values()))
        adapted.append({k: v - 0.1 * g for (k, v), g in zip(theta.items(), grads)})
    # the policy that sampled the validation episodes: the old parameters adapted once (no graph)
    old_adapted = []
    for i in range(n):
        p = {k: v.clone().requires_grad_() for k, v in old.items()}
        _, _, logp = dist(p, train_ep)
        inner = -(logp[:, i] * adv_train[:, i] * train_ep.mask[:, i]).sum() / train_ep.mask[:, i].sum()
        grads = torch.autograd.grad(inner, list(p.values()))
        old_adapted.append({k: (v - 0.1 * g).detach() for (k, v), g in zip(p.items(), grads)})
    clip_terms, kls = [], []
    for i in range(n):
        m = valid.mask[:, i]
        logp_new = dist(adapted[i], valid)[2][:, i]
        logp_old = dist(old_adapted[i], valid)[2][:, i]
        ratio = torch.exp(logp_new - logp_old)
        a = adv_valid[:, i]
        clip_terms.append((torch.minimum(ratio * a, ratio.clamp(0.8, 1.2) * a) * m).sum() / m.sum())
        mo, so, _ = dist(old, train_ep)
        mn, sn, _ = dist(theta, train_ep)
        kl = pol.kl(mo[:, i], so[:, i], mn[:, i], sn[:, i])
        kls.append((kl * train_ep.mask[:, i]).sum() / train_ep.mask[:, i].sum())
    by_hand = -torch.stack(clip_terms).mean() + 0.7 * torch.stack(kls).mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-9)
    assert torch.stack(kls).mean().item() > 1e-6  # the penalty is not trivially zero here


def test_promp_objective_gradient_against_finite_differences(float64):
    # with MAML's inner estimator the objective is a plain function of theta (LVC's stop-gradient makes
    # its value and its gradient differ by design), so its autograd gradient must match finite differences
    algo = parts_for("algo=promp", "algo.inner_estimator=vpg", "algo.kl_coef=0.7", "algo.inner_steps=2").algo
    seen = capture(algo)
    with torch.no_grad():
        for p in algo.policy.parameters():
            p.add_(0.03)
    check_against_finite_differences(seen["objective"], list(algo.policy.parameters()))


def test_adaptive_kl_rule_halves_below_and_doubles_above_the_target():
    coef = torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    kl = torch.tensor([0.001, 0.0067, 0.01, 0.02], dtype=torch.float64)  # target 0.01: bounds 0.00667, 0.015
    assert adapt_kl_coef(coef, kl, 0.01).tolist() == [0.5, 1.0, 1.0, 2.0]


def test_promp_adapts_its_kl_coefficients_and_a_checkpoint_carries_them():
    parts = parts_for("algo=promp", "algo.adaptive_kl=true", "algo.kl_coef=1e-3", "algo.kl_target=1e9")
    m = parts.algo.meta_step()
    assert m["promp/kl_coef_step0"] == pytest.approx(5e-4)  # every KL is far below a huge target: halved
    assert parts.algo.state_dict()["kl_coef"].tolist() == [5e-4]
    other = parts_for("algo=promp", "algo.adaptive_kl=true", "algo.kl_coef=1e-3", "algo.kl_target=1e9")
    other.algo.load_state_dict(parts.algo.state_dict())
    assert other.algo.kl_coef.tolist() == [5e-4]


# --- MAML with Adam outer rules ----------------------------------------------------------------------
def test_maml_ppo_outer_loss_is_ppos_clipped_surrogate_on_post_adaptation_episodes(float64):
    from dmrl.optim.ppo import clipped_surrogate

    parts = parts_for("algo/meta_optimizer=adam_clip", "algo.meta_optimizer.clip=0.1")
    algo = parts.algo
    seen = capture(algo)
    train_ep, valid = seen["batches"]
    with torch.no_grad():
        params = algo._detached(algo.per_task())
        old = algo.adapt(params, train_ep, algo.advantages(train_ep), create_graph=False)
        _, _, old_logp = algo.log_probs(old, valid)
        for p in algo.policy.parameters():
            p.add_(0.03)
        new = algo.adapt(algo._detached(algo.per_task()), train_ep, algo.advantages(train_ep), create_graph=False)
        _, _, new_logp = algo.log_probs(new, valid)
    expected = -masked_mean(clipped_surrogate(new_logp, old_logp, algo.advantages(valid), 0.1), valid.mask,
                            (0, 2)).mean()
    assert seen["objective"](False)[0].item() == pytest.approx(expected.item(), rel=1e-10)
    assert seen["fvp"] is None  # Adam takes no curvature products


def test_maml_vpg_one_adam_step_moves_along_the_exact_meta_gradient(float64):
    vpg = parts_for("algo/meta_optimizer=adam", "algo.meta_optimizer.lr=1e-2").algo
    trpo = parts_for().algo  # same seed: same tasks and episodes at the first iteration
    seen = capture(trpo)
    grad = seen["gradient"]()[1]  # the hand-computed exact meta-gradient (checked against autograd elsewhere)
    theta = parameters_to_vector(vpg.policy.parameters()).detach().clone()
    vpg.meta_step()
    step = parameters_to_vector(vpg.policy.parameters()).detach() - theta
    # Adam's first step is -lr * sign(g) (m / sqrt(v) with bias correction), up to eps
    nonzero = grad.abs() > 1e-6
    torch.testing.assert_close(step[nonzero], -1e-2 * grad[nonzero].sign(), rtol=1e-4, atol=1e-8)


# --- per-step inner step sizes -----------------------------------------------------------------------
def test_inner_lr_list_sets_each_inner_steps_size_in_training_and_the_hand_products(float64):
    parts = parts_for("algo.inner_steps=2", "algo.inner_lr=[0.3,0.05]", "algo.meta_optimizer.fvp_subsample=1.0")
    algo = parts.algo
    assert algo.step_sizes(3, later_lr_scale=0.5) == [0.3, 0.025, 0.025]
    seen = capture(algo)
    loss, kl = seen["objective"](True)
    params = seen["params"]
    auto = flat_grad(loss, params)
    hand_loss, hand = seen["gradient"]()
    torch.testing.assert_close(hand, auto, rtol=1e-8, atol=1e-12)
    kl_grad = torch.autograd.grad(seen["objective"](True)[1], params, create_graph=True)
    kl_grad = torch.cat([g.reshape(-1) for g in kl_grad])
    v = torch.randn(kl_grad.shape, generator=torch.Generator().manual_seed(3), dtype=kl_grad.dtype)
    auto_fvp = flat_grad(torch.dot(kl_grad, v), params)
    torch.testing.assert_close(seen["fvp"](v), auto_fvp, rtol=1e-7, atol=1e-12)
    # the sizes matter: the same run with equal sizes gives another gradient
    same = parts_for("algo.inner_steps=2", "algo.inner_lr=0.3", "algo.meta_optimizer.fvp_subsample=1.0").algo
    assert not torch.allclose(capture(same)["gradient"]()[1], hand, rtol=1e-3)


# --- Meta-SGD ----------------------------------------------------------------------------------------
def test_meta_sgd_step_sizes_get_autograds_gradient_through_the_inner_step(float64):
    algo = parts_for("algo=meta_sgd").algo
    seen = capture(algo)
    params = seen["params"]
    assert len(params) == 2 * len(list(algo.policy.parameters()))  # theta and one alpha per parameter tensor
    assert all(torch.all(a == 0.1) for a in algo.alpha)
    # move alpha off its constant start so that each entry's gradient is its own
    with torch.no_grad():
        for a in algo.alpha:
            a.mul_(1 + 0.5 * torch.rand(a.shape, generator=torch.Generator().manual_seed(2), dtype=a.dtype))
    check_against_finite_differences(seen["objective"], params)
    # the gradient with respect to alpha by hand: d/d alpha of L(theta - alpha * g) = -g * dL/dtheta'
    loss, _ = seen["objective"](True)
    grads = torch.autograd.grad(loss, params)
    g_alpha = grads[len(params) // 2:]
    assert all(torch.isfinite(g).all() for g in g_alpha) and sum(g.abs().sum() for g in g_alpha) > 0


def test_meta_sgd_refuses_subsampled_curvature_and_a_list_of_step_sizes():
    with pytest.raises(ConfigError, match="algo.meta_optimizer.fvp_subsample must be 1.0 for algo=meta_sgd"):
        parts_for("algo=meta_sgd", "algo.meta_optimizer.fvp_subsample=0.1")
    with pytest.raises(ConfigError, match="algo.inner_lr must be one number"):
        parts_for("algo=meta_sgd", "algo.inner_steps=2", "algo.inner_lr=[0.1,0.2]")


# --- baselines ---------------------------------------------------------------------------------------
def test_multitask_trains_on_pre_adaptation_episodes_and_fine_tunes_at_test_time(float64):
    algo = parts_for("algo=multitask").algo
    seen = capture(algo)
    (ep,) = seen["batches"]  # one batch: no inner step in training
    adv = algo.advantages(ep)
    with torch.no_grad():
        for p in algo.policy.parameters():
            p.add_(0.02)
    theta = {k: v for k, v in algo.policy.params().items()}
    mean, log_std = algo.policy(ep.obs, theta)
    logp = algo.policy.log_prob(mean, log_std, ep.actions)
    with torch.no_grad():
        for p in algo.policy.parameters():
            p.sub_(0.02)
        m0, s0 = algo.policy(ep.obs, algo.policy.params())
        logp0 = algo.policy.log_prob(m0, s0, ep.actions)
    with torch.no_grad():
        for p in algo.policy.parameters():
            p.add_(0.02)
    expected = -masked_mean(torch.exp(logp - logp0) * adv, ep.mask, (0, 2)).mean()
    assert seen["objective"](False)[0].item() == pytest.approx(expected.item(), rel=1e-9)
    result = algo.meta_test(algo.sample_tasks(), algo.final_budget())
    assert result.returns.shape == (2, 3)  # before and after the fine-tuning step


def test_oracle_policy_sees_the_task_in_every_observation():
    parts = parts_for("algo=oracle")
    algo = parts.algo
    assert algo.policy.obs_dim == 4 if hasattr(algo.policy, "obs_dim") else True
    tasks = algo.sample_tasks()
    ep = algo.sampler.sample(tasks, None)
    goal = torch.as_tensor(tasks["goal"])
    assert ep.obs.shape[-1] == 4
    mask = ep.mask.bool()
    torch.testing.assert_close(ep.obs[..., 2:][mask], goal[None, :, None, :].expand(*ep.obs.shape[:3], 2)[mask])
    with pytest.raises(ConfigError, match="algo=oracle runs with algo/sampler=local"):
        parts_for("algo=oracle", "algo/sampler=ray")


# --- resume ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [["algo=promp", "algo.adaptive_kl=true"], ["algo/meta_optimizer=adam_clip"],
                                       ["algo=meta_sgd"], ["algo=multitask"], ["algo=oracle"]],
                         ids=["promp", "maml_ppo", "meta_sgd", "multitask", "oracle"])
def test_resume_equals_uninterrupted(tmp_path, overrides):
    a, b = resume_equals_uninterrupted(lambda: parts_for(*overrides), tmp_path)
    for k, v in a["policy"].items():
        assert torch.equal(v, b["policy"][k])


# --- bad input: one line naming the key ----------------------------------------------------------------
@pytest.mark.parametrize("bad, key", [
    (["algo=promp", "algo.kl_coef=-1"], "algo.kl_coef"),
    (["algo=promp", "algo.kl_target=0"], "algo.kl_target"),
    (["algo=promp", "algo.adaptive_kl=maybe"], "algo.adaptive_kl"),
    (["algo=promp", "algo/meta_optimizer=trpo"], "meta_optimizer"),
    (["algo/meta_optimizer=adam", "algo.meta_optimizer.steps=0"], "algo.meta_optimizer.steps"),
    (["algo/meta_optimizer=adam", "algo.meta_optimizer.clip=1.5"], "algo.meta_optimizer.clip"),
    (["algo/meta_optimizer=adam", "algo.meta_optimizer.lr=0"], "algo.meta_optimizer.lr"),
    (["algo.inner_lr=[0.1,-0.1]"], "algo.inner_lr"),
    (["algo.inner_steps=2", "algo.inner_lr=[0.1,0.2,0.3]"], "algo.inner_lr must be a number > 0 or a list of 2"),
    (["algo/meta_optimizer=ppo"], "needs algo/meta_optimizer=trpo, adam or adam_clip"),
])
def test_bad_values_name_the_key(bad, key):
    with pytest.raises(ConfigError, match=key):
        parts_for(*bad)


def test_every_new_learner_evaluates_through_the_contract():
    for algo in ("promp", "meta_sgd", "multitask", "oracle"):
        parts = parts_for(f"algo={algo}")
        from dmrl.evaluation import evaluate

        out = evaluate(parts, num_tasks=3, seed=0)
        points = 1 if algo == "oracle" else 2  # the oracle's end-of-run budget takes no inner step
        assert len(out["return_mean"]) == points and all(np.isfinite(out["return_mean"]))
        json.dumps(out)  # eval.json / summary.json can hold it


@pytest.mark.parametrize("overrides", [
    ["algo/meta_optimizer=adam"],
    ["algo/meta_optimizer=adam_clip", "algo.meta_optimizer.clip=0.05"],
    ["algo=promp", "algo.kl_coef=0.5", "algo.meta_optimizer.clip=0.05"],
    ["algo=promp", "algo.kl_coef=0.5", "algo.inner_steps=2", "algo.inner_lr=[0.2,0.1]"],
    ["algo=promp", "algo.first_order=true", "algo.kl_coef=0.5"],
], ids=["vpg", "ppo_clip", "promp", "promp_2_steps", "promp_first_order"])
def test_adam_rules_hand_gradient_equals_autograd_away_from_the_sampling_point(float64, overrides):
    algo = parts_for(*overrides).algo
    seen = capture(algo)
    with torch.no_grad():  # off the sampling point: ratios != 1, some clipped, a non-zero KL penalty
        for p in algo.policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(5), dtype=p.dtype))
    loss, hand = seen["gradient"]()
    auto_loss, _ = seen["objective"](True)
    auto = flat_grad(auto_loss, seen["params"])
    assert loss.item() == pytest.approx(auto_loss.item(), rel=1e-10)
    torch.testing.assert_close(hand, auto, rtol=1e-7, atol=1e-12)
    if "algo=promp" in overrides:  # the parameters moved in place (as Adam moves them): the penalty sees it
        assert algo._inner_kls.min().item() > 1e-6


def test_meta_sgd_takes_autograds_gradient():
    seen = capture(parts_for("algo=meta_sgd", "algo/meta_optimizer=adam").algo)
    assert seen["gradient"] is None


def test_eval_lr_scale_scales_every_test_step_and_the_oracle_needs_none():
    algo = parts_for().algo
    assert algo.step_sizes(2, later_lr_scale=0.5, lr_scale=0.1) == pytest.approx([0.01, 0.005])
    oracle = parts_for("algo=oracle").algo
    result = oracle.meta_test(oracle.sample_tasks(), oracle.final_budget())
    assert result.returns.shape == (1, 3) and result.objective_name == "heldout/return_oracle"
    assert result.objective(result.returns) == pytest.approx(result.returns[0])
