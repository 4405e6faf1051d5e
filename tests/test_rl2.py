"""RL²: hidden-state handling in the trial sampler, PPO's clipping, trial-wide GAE, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from dmrl.build import build
from dmrl.config import CONF_DIR
from dmrl.loop import checkpoint_payload, restore, train
from dmrl.optim.ppo import PPO, clipped_surrogate
from dmrl.samplers.trials import Trials


def parts_for(*overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=["algo=rl2", "device=cpu", "algo.policy.hidden_size=16", *overrides])
    return build(cfg)


def replay(parts, batch: Trials) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs and values of the sampled actions, recomputed over whole trials from a zero state."""
    with torch.no_grad():
        head, values = parts.policy(batch.flat("inputs"))
        return parts.policy.log_prob(head, batch.flat("actions")), values


@pytest.mark.parametrize("critic", ["shared", "separate"])
def test_bandit_trials_carry_the_hidden_state_across_episodes(critic):
    parts = parts_for("env=bandit", "algo.meta_batch_size=6", "algo.trials_per_task=3", "algo.episodes_per_trial=7",
                      f"algo.policy.critic={critic}")
    tasks = parts.tasks.sample(6, np.random.default_rng(0))
    batch = parts.algo.sampler.sample(tasks)
    assert batch.inputs.shape == (7, 6, 3, 1 + 5 + 2) and batch.mask.all()
    logp, values = replay(parts, batch)
    torch.testing.assert_close(logp, batch.flat("log_probs"), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values, batch.flat("values"), atol=1e-5, rtol=1e-5)
    # The input at step t holds the action, reward and done flag of step t-1 (zeros at the start).
    x, a, r = batch.inputs, batch.actions, batch.rewards
    assert torch.equal(x[1:, ..., 1:6].argmax(-1), a[:-1]) and torch.equal(x[1:, ..., 6], r[:-1])
    assert torch.all(x[0, ..., 1:] == 0) and torch.all(x[1:, ..., 7] == 1)  # every pull ends an episode
    # Per-episode returns are the rewards of each one-pull episode.
    torch.testing.assert_close(batch.episode_returns, r)


@pytest.mark.parametrize("policy_args", [[], ["algo.policy.critic=separate"], ["algo.policy.prev_obs=true"]])
def test_early_episode_ends_freeze_the_hidden_state_and_are_compacted(policy_args):
    # A goal radius of 0.15 around goals near the start ends many episodes early, at different times.
    parts = parts_for("env=point_nav", "env.horizon=12", "env.goal_radius=0.15", "tasks.low=-0.2", "tasks.high=0.2",
                      "algo.meta_batch_size=5", "algo.trials_per_task=4", "algo.episodes_per_trial=3", *policy_args)
    tasks = parts.tasks.sample(5, np.random.default_rng(1))
    batch = parts.algo.sampler.sample(tasks)
    lengths = batch.mask.sum(0)
    assert lengths.min() < 36 and lengths.max() > lengths.min()  # some trials really ended episodes early
    # Compacted: each trial's real steps are a prefix.
    T = batch.mask.shape[0]
    prefix = (torch.arange(T)[:, None, None] < lengths[None]).to(batch.mask.dtype)
    assert torch.equal(batch.mask, prefix)
    # A GRU over the compacted inputs from a zero state sees exactly what the sampler's GRU saw: this
    # fails if the hidden state moved during the padding after an early end.
    logp, values = replay(parts, batch)
    m = batch.flat("mask").bool()
    torch.testing.assert_close(logp[m], batch.flat("log_probs")[m], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values[m], batch.flat("values")[m], atol=1e-5, rtol=1e-5)
    # The done flag is set exactly on the first step of episodes 2 and 3 of each trial: 2 per trial.
    pol = parts.policy
    done = pol.obs_dim + pol.action_features + 1
    done_flags = (batch.inputs[..., done] * batch.mask).sum(0)
    assert torch.all(done_flags == 2)
    if pol.prev_obs:  # the previous observation survives the compaction, step to step
        real = batch.mask[1:].bool()
        assert torch.equal(batch.inputs[1:, ..., -pol.obs_dim:][real], batch.inputs[:-1, ..., :pol.obs_dim][real])
    torch.testing.assert_close(batch.episode_returns.sum(0), batch.rewards.sum(0))


def test_trials_start_from_a_fresh_hidden_state():
    parts = parts_for("env=bandit", "algo.episodes_per_trial=5")
    tasks = parts.tasks.sample(50, np.random.default_rng(2))
    parts.algo.sampler.seed(3)
    first, _ = parts.algo.trial_curve(tasks)
    parts.algo.sampler.seed(3)
    again, _ = parts.algo.trial_curve(tasks)
    np.testing.assert_array_equal(first, again)  # nothing carries over from one call to the next
    # A trial's outputs do not depend on the other trials in the batch.
    batch = parts.algo.sampler.sample(tasks, 2)
    full, _ = replay(parts, batch)
    with torch.no_grad():
        head, _ = parts.policy(batch.flat("inputs")[:, :3])
        alone = parts.policy.log_prob(head, batch.flat("actions")[:, :3])
    torch.testing.assert_close(alone, full[:, :3], atol=1e-6, rtol=1e-6)


def test_clipped_surrogate_by_hand():
    old = torch.zeros(4)
    logp = torch.log(torch.tensor([1.5, 1.5, 0.5, 0.5])).requires_grad_()
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    s = clipped_surrogate(logp, old, adv, clip=0.2)
    torch.testing.assert_close(s, torch.tensor([1.2, -1.5, 0.5, -0.8]))
    s.sum().backward()
    # d(ratio * A)/d logp = ratio * A where unclipped, 0 where the clipped term is the minimum.
    torch.testing.assert_close(logp.grad, torch.tensor([0.0, -1.5, 0.5, 0.0]))


def test_ppo_leaves_a_policy_alone_whose_ratios_are_clipped():
    logits = torch.nn.Parameter(torch.tensor([0.5, -0.5]))
    ppo = PPO(lr=0.1, epochs=3, minibatches=1, clip=0.2, value_coef=0.0, entropy_coef=0.0)
    ppo.attach([logits])
    actions = torch.zeros(1, 8, dtype=torch.long)
    old = torch.full((1, 8), float(torch.log_softmax(logits.detach(), 0)[0]) - 0.5)  # ratio e^0.5 > 1.2
    mask = torch.ones(1, 8)

    def evaluate(cols):
        logp = torch.log_softmax(logits, 0)[actions[:, cols]]
        return logp, torch.zeros_like(logp), torch.zeros_like(logp)

    before = logits.detach().clone()
    stats = ppo.update(evaluate, old, torch.ones(1, 8), torch.zeros(1, 8), mask)
    assert torch.equal(logits.detach(), before) and stats["clip_fraction"] == 1.0
    # With an unclipped ratio the same update raises the log-probability of a good action.
    old = torch.log_softmax(logits.detach(), 0)[actions]
    ppo.update(evaluate, old, torch.ones(1, 8), torch.zeros(1, 8), mask)
    assert torch.log_softmax(logits.detach(), 0)[0] > torch.log_softmax(before, 0)[0]


def test_ppo_anneals_lr_and_entropy_bonus_linearly_to_zero():
    """anneal_lr / anneal_entropy: factor 1 - updates / anneal_iterations, applied to the step taken."""
    logits = torch.nn.Parameter(torch.zeros(3))
    ppo = PPO(lr=0.3, epochs=1, minibatches=1, entropy_coef=0.05, anneal_lr=True, anneal_entropy=True,
              anneal_iterations=4, value_coef=0.0)
    ppo.attach([logits])
    mask, zeros = torch.ones(1, 2), torch.zeros(1, 2)

    def evaluate(cols):  # entropy only: zero advantages leave the surrogate without gradient
        logp_all = torch.log_softmax(logits, 0)
        entropy = -(logp_all.exp() * logp_all).sum().expand(1, len(cols))
        return logp_all[0].expand(1, len(cols)), entropy, torch.zeros(1, len(cols))

    seen = []
    for _ in range(6):
        stats = ppo.update(evaluate, torch.full((1, 2), -float(np.log(3))), zeros, zeros, mask)
        seen.append((stats["lr"], stats["entropy_coef"]))
    expected = [(0.3 * f, 0.05 * f) for f in (1.0, 0.75, 0.5, 0.25, 0.0, 0.0)]
    assert np.allclose(seen, expected)
    # the annealed coefficient is the one in the loss: from skewed logits and zero advantages the
    # entropy bonus alone moves them towards uniform, and not at all once annealed to zero
    for done, moves in ((0, True), (4, False)):
        logits.data = torch.tensor([2.0, 0.0, -1.0])
        ppo = PPO(lr=0.1, epochs=1, minibatches=1, entropy_coef=0.05, anneal_entropy=True, anneal_iterations=4,
                  value_coef=0.0)
        ppo.attach([logits])
        ppo.updates = done
        ppo.update(evaluate, torch.log_softmax(logits.detach(), 0)[0].expand(1, 2).clone(), zeros, zeros, mask)
        spread = float(logits.detach().max() - logits.detach().min())
        assert (spread < 3.0) if moves else (spread == 3.0)
    # without annealing both stay put
    fixed = PPO(lr=0.3, entropy_coef=0.05, anneal_iterations=4)
    fixed.updates = 3
    assert (fixed.current_lr(), fixed.current_entropy_coef()) == (0.3, 0.05)


def test_gae_runs_across_episode_boundaries_within_a_trial():
    parts = parts_for("env=bandit", "algo.gae_lambda=0.5", "algo.gamma=0.9", "algo.normalize_advantages=false")
    rewards = torch.tensor([1.0, 0.0, 2.0]).reshape(3, 1, 1)
    values = torch.tensor([0.5, 0.2, 0.1]).reshape(3, 1, 1)
    zeros = torch.zeros(3, 1, 1)
    batch = Trials(zeros[..., None], zeros.long(), zeros, values, rewards, torch.ones(3, 1, 1), rewards)
    adv, returns = parts.algo.advantages(batch)
    # Each step is a one-pull episode; bootstrapping still crosses into the next episode of the trial.
    d = [1 + 0.9 * 0.2 - 0.5, 0 + 0.9 * 0.1 - 0.2, 2 - 0.1]
    a2 = d[2]
    a1 = d[1] + 0.45 * a2
    a0 = d[0] + 0.45 * a1
    torch.testing.assert_close(adv[:, 0], torch.tensor([a0, a1, a2]))
    torch.testing.assert_close(returns[:, 0], torch.tensor([a0 + 0.5, a1 + 0.2, a2 + 0.1]))


def test_rl2_resume_equals_uninterrupted(tmp_path):
    small = ["env=tabular_mdp", "algo.meta_batch_size=4", "algo.trials_per_task=2", "algo.episodes_per_trial=2"]
    full = parts_for(*small)
    ref = train(full, iterations=3, run_dir=tmp_path / "full", checkpoint_every=10, checkpoint_keep=1,
                tensorboard=False, progress=False)
    part = parts_for(*small)
    first = train(part, iterations=1, run_dir=tmp_path / "part", checkpoint_every=10, checkpoint_keep=1,
                  tensorboard=False, progress=False)
    state = checkpoint_payload(part, "", 1, first["env_steps"])
    resumed = parts_for(*small)
    start = restore(resumed, state)
    train(resumed, iterations=3, run_dir=tmp_path / "part", checkpoint_every=10, checkpoint_keep=1,
          tensorboard=False, progress=False, start=start)
    lines = [json.loads(x) for x in (tmp_path / "part/metrics.jsonl").read_text().splitlines()]
    full_lines = [json.loads(x) for x in (tmp_path / "full/metrics.jsonl").read_text().splitlines()]
    def strip(records):
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]

    assert len(lines) == 3 and strip(lines) == strip(full_lines)
    assert ref["meta_train/trial_return"] == lines[-1]["meta_train/trial_return"]
    for k, v in full.policy.state_dict().items():
        assert torch.equal(v, resumed.policy.state_dict()[k])


@pytest.mark.parametrize("bad, key", [(["algo=rl2", "algo/meta_optimizer=trpo"], "algo/meta_optimizer=ppo"),
                                      (["algo=rl2", "algo/policy=gaussian_mlp"], "algo/policy=gru"),
                                      (["env=bandit", "algo=maml"], "use algo=rl2")])
def test_mismatched_parts_name_the_fix(bad, key):
    from dmrl.errors import ConfigError

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=["device=cpu", *bad])
    with pytest.raises(ConfigError, match=key):
        build(cfg)


def test_truncated_bptt_keeps_outputs_and_cuts_gradients():
    from dmrl.policies.recurrent import RecurrentPolicy

    torch.manual_seed(0)
    policy = RecurrentPolicy(obs_dim=2, act_dim=1, num_actions=3, hidden_size=8)
    x = torch.randn(6, 4, policy.input_dim, requires_grad=True)
    full_head, full_v = policy(x)
    cut_head, cut_v = policy(x, tbptt=2)
    torch.testing.assert_close(cut_head, full_head)
    torch.testing.assert_close(cut_v, full_v)
    # The last step's value depends on the first input through the hidden state, unless truncated.
    (g_full,) = torch.autograd.grad(full_v[-1].sum(), x)
    (g_cut,) = torch.autograd.grad(cut_v[-1].sum(), x)
    assert g_full[0].abs().sum() > 0 and torch.all(g_cut[:4] == 0) and g_cut[4:].abs().sum() > 0


def test_separate_critic_keeps_value_and_policy_gradients_apart():
    from dmrl.policies.recurrent import RecurrentPolicy

    torch.manual_seed(0)
    policy = RecurrentPolicy(obs_dim=3, act_dim=1, num_actions=4, hidden_size=8, critic="separate")
    assert policy.initial_state(5, torch.device("cpu")).shape == (5, 16)
    x = torch.randn(6, 5, policy.input_dim)
    head, values = policy(x)
    actor = [p for n, p in policy.named_parameters() if n.startswith(("gru.", "pi."))]
    critic = [p for n, p in policy.named_parameters() if n.startswith(("critic_gru.", "v."))]
    assert len(actor) + len(critic) == len(list(policy.parameters()))
    value_grads = torch.autograd.grad(values.sum(), actor + critic, allow_unused=True)
    assert all(g is None for g in value_grads[: len(actor)]) and all(g.abs().sum() > 0 for g in value_grads[len(actor):])
    head_grads = torch.autograd.grad(head.sum(), actor + critic, allow_unused=True)
    assert all(g.abs().sum() > 0 for g in head_grads[: len(actor)]) and all(g is None for g in head_grads[len(actor):])
    # Stepping one step at a time through the stacked state gives the whole-sequence outputs.
    h, heads, vals = policy.initial_state(5, x.device), [], []
    with torch.no_grad():
        for t in range(6):
            hd, v, h = policy.step(x[t], h)
            heads.append(hd)
            vals.append(v)
    torch.testing.assert_close(torch.stack(heads), head.detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(torch.stack(vals), values.detach(), atol=1e-6, rtol=1e-6)


def test_update_gate_bias_shifts_only_the_update_gates():
    from dmrl.policies.recurrent import RecurrentPolicy

    torch.manual_seed(0)
    plain = RecurrentPolicy(obs_dim=3, act_dim=1, num_actions=4, hidden_size=8, critic="separate")
    torch.manual_seed(0)
    biased = RecurrentPolicy(obs_dim=3, act_dim=1, num_actions=4, hidden_size=8, critic="separate",
                             update_gate_bias=1.5)
    expected = torch.zeros(24)
    expected[8:16] = 1.5  # gates (r, z, n): z only
    for name in ("gru", "critic_gru"):
        a, b = getattr(plain, name), getattr(biased, name)
        torch.testing.assert_close(b.bias_hh_l0 - a.bias_hh_l0, expected)
        assert torch.equal(a.bias_ih_l0, b.bias_ih_l0) and torch.equal(a.weight_hh_l0, b.weight_hh_l0)
    # PyTorch's GRU: h' = (1 - z) n + z h. With the input and recurrent weights zeroed, h' - h
    # = (1 - z)(n - h), so the biased units move less from their state.
    x, h0 = torch.zeros(1, 1, plain.input_dim), torch.full((1, 1, 8), 0.5)
    moves = []
    for p in (plain, biased):
        with torch.no_grad():
            p.gru.weight_hh_l0.zero_()
            p.gru.weight_ih_l0.zero_()
            z = torch.sigmoid(p.gru.bias_ih_l0[8:16] + p.gru.bias_hh_l0[8:16])
            n = torch.tanh(p.gru.bias_ih_l0[16:] + torch.sigmoid(p.gru.bias_ih_l0[:8] + p.gru.bias_hh_l0[:8]) *
                           p.gru.bias_hh_l0[16:])
            h1 = p.gru(x, h0)[1]
            torch.testing.assert_close(h1.view(8), (1 - z) * n + z * 0.5)
            moves.append((1 - z).mean())
    assert moves[1] < moves[0]


def test_prev_obs_input_holds_the_previous_steps_observation():
    parts = parts_for("env=tabular_mdp", "algo.policy.prev_obs=true", "algo.meta_batch_size=3", "algo.trials_per_task=2",
                      "algo.episodes_per_trial=3")
    tasks = parts.tasks.sample(3, np.random.default_rng(4))
    batch = parts.algo.sampler.sample(tasks)
    S = 10
    x = batch.inputs  # [T, N, B, S + A + 2 + S]: obs, previous action, reward, done, previous obs
    assert x.shape[-1] == S + 5 + 2 + S == parts.policy.input_dim
    assert torch.all(x[0, ..., -S:] == 0)
    # Every later step carries the observation the previous action was taken in, across episode ends.
    assert torch.equal(x[1:, ..., -S:], x[:-1, ..., :S])
    assert torch.all(x[10, ..., :S].argmax(-1) == 0) and torch.all(x[10, ..., S + 6] == 1)  # episode 2 starts in state 0
    logp, values = replay(parts, batch)
    torch.testing.assert_close(logp, batch.flat("log_probs"), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values, batch.flat("values"), atol=1e-5, rtol=1e-5)
