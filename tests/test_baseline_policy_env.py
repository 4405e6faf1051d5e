import gymnasium
import numpy as np
import pytest
import torch

import dmrl.envs  # noqa: F401  (registers dmrl/PointNav-v0)
from dmrl.baselines.linear import LinearFeatureBaseline
from dmrl.envs.point_nav import PointNav
from dmrl.errors import ConfigError
from dmrl.keys import check_node
from dmrl.policies.gaussian_mlp import GaussianMLPPolicy
from dmrl.tasks.distributions import UniformBox, task_rng


def test_linear_baseline_recovers_linear_targets_per_task():
    g = torch.Generator().manual_seed(0)
    T, N, B = 10, 3, 6
    obs = torch.randn(T, N, B, 2, generator=g)
    mask = torch.ones(T, N, B)
    mask[7:, 1, :3] = 0
    feats = LinearFeatureBaseline.features(obs, mask)
    w_true = torch.randn(N, feats.shape[-1], generator=g)
    y = torch.einsum("tnbf,nf->tnb", feats, w_true)
    values = LinearFeatureBaseline(reg_coeff=1e-10).fit_predict(obs, y, mask)
    assert torch.allclose(values, y, atol=1e-3)
    assert (values[mask == 0] == 0).all()


def test_batched_params_equal_per_task_loop():
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, (16, 16))
    N = 4
    params = {k: v.detach().unsqueeze(0).repeat(N, *[1] * v.dim()) + 0.1 * torch.randn(N, *v.shape)
              for k, v in policy.params().items()}
    obs = torch.randn(N, 7, 5, 2)
    mean, log_std = policy(obs, params)
    for i in range(N):
        m_i, s_i = policy(obs[i], {k: v[i] for k, v in params.items()})
        assert torch.allclose(mean[i], m_i, atol=1e-6)
        assert torch.allclose(log_std[i], s_i)


def test_log_prob_and_kl_match_torch_distributions():
    g = torch.Generator().manual_seed(3)
    m1, s1, m2, s2 = (torch.randn(5, 3, generator=g) for _ in range(4))
    a = torch.randn(5, 3, generator=g)
    p = torch.distributions.Normal(m1, s1.exp())
    q = torch.distributions.Normal(m2, s2.exp())
    assert torch.allclose(GaussianMLPPolicy.log_prob(m1, s1, a), p.log_prob(a).sum(-1), atol=1e-5)
    assert torch.allclose(GaussianMLPPolicy.kl(m1, s1, m2, s2), torch.distributions.kl_divergence(p, q).sum(-1), atol=1e-5)


def test_point_nav_dynamics_by_hand():
    env = PointNav(horizon=100, normalize_actions=False)
    obs = env.reset({"goal": np.array([[0.3, -0.2]], dtype=np.float32)}, episodes=2)
    assert obs.shape == (1, 2, 2) and (obs == 0).all()
    obs, reward, done, _, _ = env.step(torch.tensor([[[0.5, -0.05], [0.02, 0.0]]]))
    assert torch.allclose(obs[0, 0], torch.tensor([0.1, -0.05]))  # first axis clipped to 0.1
    assert torch.allclose(reward[0, 0], -torch.tensor([0.2, 0.15]).norm())
    assert not done.any()
    env.reset({"goal": np.array([[0.05, 0.0]], dtype=np.float32)}, episodes=1)
    _, reward, done, _, _ = env.step(torch.tensor([[[0.055, 0.0]]]))
    assert done.all() and reward.item() == pytest.approx(-0.005, abs=1e-6)
    with pytest.raises(ValueError, match="actions must have shape"):
        env.step(torch.zeros(1, 1, 3))


def test_point_nav_normalized_actions_scale_to_the_velocity_bound():
    """MAML's original code (rllab's ``normalize``): actions in [-1, 1] are velocities in [-0.1, 0.1]."""
    env = PointNav(horizon=100, normalize_actions=True)  # the config's default (the class keeps the old raw one)
    env.reset({"goal": np.array([[0.3, -0.2]], dtype=np.float32)}, episodes=3)
    obs, reward, *_ = env.step(torch.tensor([[[0.5, -0.25], [3.0, -7.0], [-1.0, 1.0]]]))
    assert torch.allclose(obs[0], torch.tensor([[0.05, -0.025], [0.1, -0.1], [-0.1, 0.1]]))
    assert torch.allclose(reward[0, 0], -torch.tensor([0.25, 0.175]).norm())
    raw = PointNav(horizon=100)
    raw.reset({"goal": np.array([[0.3, -0.2]], dtype=np.float32)}, episodes=1)
    assert torch.allclose(raw.step(torch.tensor([[[0.5, -0.025]]]))[0][0, 0], torch.tensor([0.1, -0.025]))


@pytest.mark.parametrize("normalize_actions, action", [(True, 1.0), (False, 0.1)])
def test_point_nav_gymnasium_registration_agrees_with_batched_env(normalize_actions, action):
    env = gymnasium.make("dmrl/PointNav-v0", normalize_actions=normalize_actions)
    assert np.allclose(env.action_space.high, action) and np.allclose(env.action_space.low, -action)
    obs, _ = env.reset(seed=0, options={"task": {"goal": [0.2, 0.2]}})
    total, steps, terminated, truncated = 0.0, 0, False, False
    while not (terminated or truncated):
        obs, r, terminated, truncated, _ = env.step(np.array([action, action], dtype=np.float32))
        total += r
        steps += 1
    assert terminated and steps == 2
    assert total == pytest.approx(-(np.hypot(0.1, 0.1)) - 0.0, abs=1e-5)


def test_task_streams_are_seeded_and_disjoint():
    dist = UniformBox("goal", -0.5, 0.5, 2)
    a = dist.sample(50, task_rng(0, "train"))["goal"]
    b = dist.sample(50, task_rng(0, "train"))["goal"]
    c = dist.sample(50, task_rng(0, "test"))["goal"]
    assert np.array_equal(a, b)
    assert not np.isin(c, a).any()
    assert a.min() >= -0.5 and a.max() <= 0.5
    # impossible values are refused by the classes' declared keys (dmrl.keys), before anything is built
    with pytest.raises(ConfigError, match="tasks.low"):
        check_node(UniformBox, {"key": "goal", "low": 1.0, "high": 0.0, "dim": 2}, "tasks")
    with pytest.raises(ConfigError, match="env.horizon"):
        check_node(PointNav, {"horizon": 0}, "env")


def test_point_nav_squared_distance_reward_option():
    env = PointNav(reward="squared_distance")
    env.reset({"goal": np.array([[0.3, 0.4]], dtype=np.float32)}, episodes=1)
    _, reward, *_ = env.step(torch.zeros(1, 1, 2))
    assert reward.item() == pytest.approx(-0.25, abs=1e-6)
    with pytest.raises(ConfigError, match="env.reward"):
        check_node(PointNav, {"reward": "manhattan"}, "env")
