"""PEARL (algo=pearl): the posterior's math, SAC's losses by hand, where gradients go, replay buffers
through a checkpoint, exact resume, the meta-test's tasks, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import resume_equals_uninterrupted
from hydra import compose, initialize_config_dir

from dmrl.algos.pearl import kl_standard_normal, product_of_gaussians
from dmrl.build import build
from dmrl.buffers import TaskReplay
from dmrl.config import CONF_DIR
from dmrl.errors import ConfigError
from dmrl.loop import train
from dmrl.optim import sac
from dmrl.policies.tanh_gaussian import TanhGaussianPolicy

TINY = ["algo.net_size=16", "algo.policy.hidden_sizes=[16,16]", "algo.encoder_hidden=[16]", "algo.meta_batch=4",
        "algo.batch_size=8", "algo.context_batch=6", "algo.num_train_steps=3", "algo.num_initial_steps=40",
        "algo.num_tasks_sample=2", "algo.num_steps_prior=40", "algo.num_extra_rl_steps_posterior=20",
        "final_eval.num_tasks=0"]


def parts_for(*overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=["device=cpu", "env=point_robot", "algo=pearl", *TINY, *overrides])
    return build(cfg)


# --- the posterior ------------------------------------------------------------------------------------
def test_product_of_two_and_three_gaussians_by_hand():
    mu = torch.tensor([[1.0], [3.0]])
    var = torch.tensor([[1.0], [3.0]])
    m, v = product_of_gaussians(mu, var)  # precisions 1 + 1/3 = 4/3
    assert v.item() == pytest.approx(0.75) and m.item() == pytest.approx(0.75 * (1 + 1))
    mu3, var3 = torch.tensor([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]]), torch.tensor([[2.0, 1.0], [2.0, 1.0], [1.0, 1.0]])
    m, v = product_of_gaussians(mu3, var3)
    assert v.tolist() == pytest.approx([0.5, 1 / 3])  # 1 / (1/2 + 1/2 + 1), 1 / 3
    assert m.tolist() == pytest.approx([0.5 * (0 + 1 + 4), 1.0])
    # variances are clamped from below (the reference's 1e-7)
    assert product_of_gaussians(torch.zeros(2, 1), torch.zeros(2, 1))[1].item() == pytest.approx(5e-8)


def test_kl_to_the_standard_normal_equals_the_closed_form():
    mu, var = torch.tensor([[0.3, -1.2, 2.0]]), torch.tensor([[0.5, 2.0, 0.1]])
    q = torch.distributions.Normal(mu, var.sqrt())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(kl_standard_normal(mu, var), expected)


# --- SAC ----------------------------------------------------------------------------------------------
def test_tanh_gaussian_log_prob_matches_torch_and_a_sampled_density():
    torch.manual_seed(0)
    mean, log_std = torch.tensor([0.3, -0.5]), torch.tensor([-0.2, 0.1])
    u = mean + log_std.exp() * torch.randn(5, 2)
    ours = TanhGaussianPolicy.log_prob(u, mean, log_std)
    dist = torch.distributions.TransformedDistribution(torch.distributions.Normal(mean, log_std.exp()),
                                                       [torch.distributions.TanhTransform()])
    torch.testing.assert_close(ours, dist.log_prob(torch.tanh(u)).sum(-1), atol=1e-4, rtol=1e-4)
    # a histogram of samples in 1-D against exp(log_prob) (the squashing correction included)
    m, s = torch.tensor([0.4]), torch.tensor([0.0])
    a = torch.tanh(m + torch.randn(400_000, 1))
    hist, edges = np.histogram(a.numpy(), bins=40, range=(-0.95, 0.95), density=False)
    centers = torch.tensor((edges[:-1] + edges[1:]) / 2, dtype=torch.float32)[:, None]
    density = TanhGaussianPolicy.log_prob(torch.atanh(centers), m, s).exp().numpy()
    empirical = hist / (400_000 * (edges[1] - edges[0]))
    np.testing.assert_allclose(empirical, density, rtol=0.05, atol=0.01)


def test_sac_losses_on_a_fixed_batch_by_hand():
    r, term, next_v = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]), torch.tensor([10.0, 10.0])
    target = sac.q_target(r, term, next_v, reward_scale=5.0, gamma=0.9)
    assert target.tolist() == [5.0 + 9.0, 10.0]  # a terminal transition does not bootstrap
    q1, q2 = torch.tensor([13.0, 11.0]), torch.tensor([14.0, 10.0])
    assert sac.q_loss(q1, q2, target).item() == pytest.approx((1 + 1) / 2 + (0 + 0) / 2)
    v, min_q, log_pi = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 1.0]), torch.tensor([0.5, -1.0])
    assert sac.v_loss(v, min_q, log_pi).item() == pytest.approx(0.5 * ((1 - 2.5) ** 2 + (2 - 2.0) ** 2) / 2)
    mean, log_std = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, -0.5]])
    loss = sac.actor_loss(log_pi, min_q, mean, log_std, 1e-3, 1e-3)
    assert loss.item() == pytest.approx(((0.5 - 3) + (-1 - 1)) / 2 + 1e-3 * 2.5 + 1e-3 * 0.25)


def test_a_time_limit_end_bootstraps_in_the_q_target():
    """point_robot episodes end by the time limit only: truncated, never terminated, so every stored
    transition bootstraps (terminated = 0 in the buffer)."""
    parts = parts_for()
    parts.algo.meta_step()
    r = parts.algo.replay
    held = int(r.size[0])
    assert held > 0 and float(r.data["terminated"][:, :held].abs().sum()) == 0.0
    ep = parts.algo.sampler.sample(parts.tasks.at([0, 1]), torch.zeros(2, 3, 5))
    assert ep.truncated[-1].all() and not ep.terminated.any()


# --- where gradients go ---------------------------------------------------------------------------------
def test_the_encoder_learns_from_the_critics_loss_and_the_kl_only():
    algo = parts_for().algo
    algo.collect_iteration()
    seen = {}
    real_step = algo.opt_context.step

    def step():  # the encoder's gradient when its optimizer steps: the Q loss and the KL only
        seen["at_step"] = [p.grad.clone() for p in algo.encoder.parameters()]
        real_step()

    algo.opt_context.step = step
    algo.train_step()
    after = [p.grad for p in algo.encoder.parameters()]
    # the value and actor losses that follow leave the encoder's gradient untouched (z detached there)
    assert all(torch.equal(a, b) for a, b in zip(seen["at_step"], after))
    assert sum(g.abs().sum() for g in seen["at_step"]) > 0
    # and the KL alone reaches it too: with kl_lambda = 0 the gradient differs
    algo0 = parts_for("algo.kl_lambda=0").algo
    algo0.collect_iteration()
    seen0 = {}
    real0 = algo0.opt_context.step
    algo0.opt_context.step = lambda: (seen0.setdefault("g", [p.grad.clone() for p in algo0.encoder.parameters()]),
                                      real0())
    algo0.train_step()
    assert not all(torch.allclose(a, b) for a, b in zip(seen["at_step"], seen0["g"]))


# --- collection --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("every, rounds, posteriors", [(2, [2, 2, 1], 2), (1, [1] * 5, 4), (0, [5], 1)])
def test_a_posterior_collection_starts_from_the_prior_and_infers_again_after_every_round(every, rounds, posteriors):
    algo = parts_for(f"algo.update_post_train={every}", "algo.num_steps_posterior=100").algo  # 5 episodes of 20
    idx = np.array([0, 3])
    algo.collect(idx, 40, posterior=False, encoder_too=True)  # the iteration's prior context
    sizes, episodes = [], []
    real_posterior, real_sample = algo.posterior, algo.sampler.sample
    algo.posterior = lambda tasks: (sizes.append(int(algo.enc_replay.size[idx[0]])), real_posterior(tasks))[1]
    algo.sampler.sample = lambda tasks, z, **k: (episodes.append(z.shape[1]), real_sample(tasks, z, **k))[1]
    got = algo.collect(idx, 100, posterior=True, encoder_too=True)
    assert episodes == rounds and len(sizes) == posteriors and got.env_steps == 2 * 100
    # each posterior sees the context so far: the prior's 40 steps and the rounds before it
    firsts = np.cumsum([0, *rounds])[1:-1] if every else [0]
    assert sizes == [40 + 20 * int(n) for n in firsts][:posteriors]
    assert int(algo.enc_replay.size[idx[0]]) == 140 and int(algo.replay.size[idx[0]]) == 140


# --- buffers and checkpoints ------------------------------------------------------------------------------
def test_replay_buffer_round_trips_bit_equal_with_positions_and_keeps_sampling_the_same(tmp_path):
    from dmrl.checkpoint import load_checkpoint, save_checkpoint

    b = TaskReplay(3, 7, 2, 1, initial=2)
    for task, m in ((0, 5), (0, 4), (2, 3)):  # task 0 wraps around its ring of 7
        x = torch.randn(m, 2)
        b.add(task, {"obs": x, "actions": x[:, :1], "rewards": x[:, 0], "next_obs": x + 1, "terminated": torch.zeros(m)})
    payload = {"config": "", "iteration": 0, "env_steps": 0, "algo": {"buffer": b.state_dict()}, "rng": {}}
    save_checkpoint(tmp_path / "b.pt", payload)
    state = load_checkpoint(tmp_path / "b.pt")  # weights_only: tensors and plain containers only
    c = TaskReplay(3, 7, 2, 1, initial=2)
    c.load_state_dict(state["algo"]["buffer"])
    assert c.size.tolist() == [7, 0, 3] and c.pos.tolist() == b.pos.tolist() == [2, 0, 3]
    for k in b.data:
        assert torch.equal(b.data[k][:, : b.size.max()], c.data[k][:, : c.size.max()])
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    s1, s2 = b.sample(torch.tensor([0, 2, 0]), 9, g1), c.sample(torch.tensor([0, 2, 0]), 9, g2)
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert torch.equal(b.recent(0, 3)["obs"], c.recent(0, 3)["obs"])


def test_a_foreign_buffer_state_is_refused():
    b = TaskReplay(3, 7, 2, 1)
    with pytest.raises(ValueError, match="tasks of capacity"):
        b.load_state_dict(TaskReplay(4, 7, 2, 1).state_dict())


def test_resume_equals_uninterrupted(tmp_path):
    a, b = resume_equals_uninterrupted(parts_for, tmp_path)
    for net in ("policy", "encoder", "qf1", "target_vf"):
        assert all(torch.equal(v, b[net][k]) for k, v in a[net].items())
    assert "replay" not in a  # beside the checkpoint, not in it


# --- meta-test --------------------------------------------------------------------------------------------
def test_the_meta_test_uses_only_test_split_tasks_and_reports_each_trajectory():
    from dmrl.evaluation import evaluate

    parts = parts_for("env=sparse_point_robot")
    seen = []
    real = parts.algo.sampler.sample
    parts.algo.sampler.sample = lambda tasks, *a, **k: (seen.append(tasks["goal"].copy()), real(tasks, *a, **k))[1]
    out = evaluate(parts, num_tasks=20, seed=0)
    test = parts.tasks.splits["test"]["goal"]
    train_goals = parts.tasks.splits["train"]["goal"]
    assert len(seen) == 2 and all(len(g) == 20 for g in seen)
    assert all((g == test).all(-1).any() for goals in seen for g in goals)
    assert not any((g == train_goals).all(-1).any() for goals in seen for g in goals)
    assert len(out["trajectory_return_mean"]) == 2 and len(out["success_mean"]) == 2
    assert out["objective_name"] == "heldout/return_after_exploration"
    assert out["objective"] == pytest.approx(out["trajectory_return_mean"][1], rel=1e-6)


def test_an_exploration_budget_sets_how_many_trajectories_use_the_prior():
    from dmrl.evaluation import evaluate
    from dmrl.learner import MetaTestBudget

    parts = parts_for("env=sparse_point_robot")  # the preset's own num_exp_traj_eval is 1
    calls = []
    real = parts.algo.encoder.forward
    parts.algo.encoder.forward = lambda *a, **k: (calls.append(1), real(*a, **k))[1]
    out = evaluate(parts, num_tasks=10, seed=0, budget=MetaTestBudget(exploration=3, episodes=5))
    assert len(calls) == 2  # the posterior only for trajectories 4 and 5: the first 3 explore with the prior
    assert out["objective"] == pytest.approx(out["trajectory_return_mean"][3], rel=1e-6)
    calls.clear()
    assert len(evaluate(parts, num_tasks=10, seed=0)["trajectory_return_mean"]) == 2 and len(calls) == 1


def test_dmrl_eval_exploration_trajectories_is_for_a_pearl_checkpoint_only():
    from pathlib import Path

    from dmrl.cli.evaluate import eval_job

    maml = Path(__file__).parent / "data" / "v1_maml_point_nav.pt"
    for overrides, message in (([f"checkpoint={maml}"], "only PEARL's meta-test"),
                               (["env=sparse_point_robot", "policy=random"], "protocol=dmrl meta-test only")):
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            cfg = compose(config_name="eval", overrides=[*overrides, "exploration_trajectories=2", "device=cpu"])
        with pytest.raises(ConfigError, match=f"^exploration_trajectories: .*{message}"):
            eval_job(cfg)


@pytest.mark.parametrize("bad, key", [
    (["algo.meta_batch=0"], "algo.meta_batch"),
    (["algo.num_steps_prior=-1"], "algo.num_steps_prior"),
    (["algo.num_steps_prior=0"], "algo.num_steps_prior"),
    (["algo.kl_lambda=-0.1"], "algo.kl_lambda"),
    (["algo.update_post_train=-1"], "algo.update_post_train"),
    (["algo.reward_scale=0"], "algo.reward_scale"),
    (["algo.meta_optimizer.tau=0"], "algo.meta_optimizer.tau"),
    (["algo/meta_optimizer=trpo"], "algo=pearl needs algo/meta_optimizer=sac"),
    (["env=point_nav"], "algo=pearl needs a fixed task pool"),
    (["algo/policy=gaussian_mlp"], "algo/policy=tanh_gaussian"),
    (["env=bandit"], "continuous actions"),
])
def test_bad_values_name_the_key(bad, key):
    with pytest.raises(ConfigError, match=key):
        parts_for(*bad)


def test_masked_factors_leave_the_posterior_and_an_empty_context_is_the_prior():
    from dmrl.algos.pearl import ContextEncoder

    torch.manual_seed(0)
    enc = ContextEncoder(3, 2, [8])
    ctx = torch.randn(2, 5, 3)
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0], [0.0] * 5])
    mu, var = enc(ctx, mask)
    mu_first, var_first = enc(ctx[:1, :2])
    torch.testing.assert_close(mu[0], mu_first[0]) and torch.testing.assert_close(var[0], var_first[0])
    assert mu[1].tolist() == [0.0, 0.0] and var[1].tolist() == [1.0, 1.0]


def test_a_resume_takes_a_lowered_step_size():
    parts = parts_for()
    parts.algo.meta_step()
    state = parts.algo.state_dict()
    lower = parts_for("algo.meta_optimizer.lr=1e-5")
    lower.algo.load_state_dict(state)
    assert all(g["lr"] == 1e-5 for opt in (lower.algo.opt_policy, lower.algo.opt_context) for g in opt.param_groups)


def test_sparse_family_critic_learns_the_dense_reward_and_the_context_sees_the_sparse_one():
    algo = parts_for("env=sparse_point_robot", "algo.dense_rl_reward=true").algo
    algo.collect_iteration()
    held = int(algo.replay.size[0])
    rl, ctx = algo.replay.data["rewards"][0, :held, 0], algo.enc_replay.data["rewards"][0, :, 0]
    assert (rl < 0).all()  # -distance at every step
    assert (ctx[: int(algo.enc_replay.size[0])] >= 0).all()  # the sparse reward: 0 away from the goal
    plain = parts_for("env=sparse_point_robot").algo
    plain.collect_iteration()
    assert (plain.replay.data["rewards"][0, : int(plain.replay.size[0]), 0] >= 0).all()


# --- replay buffers beside the checkpoint -----------------------------------------------------------------
def test_buffers_are_written_beside_last_pt_and_a_damaged_or_foreign_file_is_one_line(tmp_path, capsys):
    import shutil

    from dmrl.checkpoint import buffers_path, load_buffers, load_checkpoint
    from dmrl.errors import CheckpointError

    parts = parts_for()
    train(parts, iterations=2, run_dir=tmp_path, checkpoint_every=10, checkpoint_keep=1, tensorboard=False,
          progress=False)
    last = tmp_path / "checkpoints/last.pt"
    side = buffers_path(last)
    assert side.name == "last.buffers.pt" and side.is_file()
    assert "replay" not in load_checkpoint(last)["algo"]
    said = [line for line in capsys.readouterr().err.splitlines() if "replay buffers beside last.pt" in line]
    assert len(said) == 1 and " MiB, written in " in said[0]  # the cost, said once (until the size doubles)
    buffers = load_buffers(side, 2)
    assert torch.equal(buffers["replay"]["size"], parts.algo.replay.size)
    with pytest.raises(CheckpointError, match="holds iteration 2, its checkpoint iteration 1"):
        load_buffers(side, 1)
    shutil.copy(last, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a dmrl buffer file"):
        load_buffers(tmp_path / "foreign.pt", 2)
    (tmp_path / "cut.pt").write_bytes(side.read_bytes()[: side.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_buffers(tmp_path / "cut.pt", 2)


def test_without_buffers_a_resume_refills_them_and_says_so(tmp_path, capsys):
    from dmrl.checkpoint import buffers_path, load_checkpoint
    from dmrl.loop import restore

    parts = parts_for()
    train(parts, iterations=1, run_dir=tmp_path, checkpoint_every=10, checkpoint_keep=1, tensorboard=False,
          progress=False, buffers=False)
    last = tmp_path / "checkpoints/last.pt"
    assert not buffers_path(last).exists()
    resumed = parts_for()
    restore(resumed, load_checkpoint(last), last)
    assert "no replay buffers beside" in capsys.readouterr().err and not bool(resumed.algo.initialized)
    m = resumed.algo.meta_step()  # the initial collection again, then training as before
    assert int(resumed.algo.replay.size.min()) > 0 and np.isfinite(m["sac/q_loss"])
