"""The discrete families (RL² section 3): Bernoulli bandits and random tabular MDPs, by hand and by statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from dmrl.config import CONF_DIR
from dmrl.envs import Bandit, TabularMDP
from dmrl.errors import ConfigError
from dmrl.keys import check_node
from dmrl.tasks import BernoulliBandits, RandomMDPs, task_rng


def test_bandit_pays_the_pulled_arm_of_deterministic_arms():
    env = Bandit(arms=2)
    obs = env.reset({"p": np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)}, episodes=3)
    assert obs.shape == (2, 3, 1) and (obs == 1).all()
    actions = torch.tensor([[0, 1, 1], [0, 0, 1]])
    obs, reward, done, _, _ = env.step(actions)
    assert obs.shape == (2, 3, 1) and reward.dtype == torch.get_default_dtype() and done.dtype == torch.bool
    assert reward.tolist() == [[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]
    assert done.all()
    assert env.num_actions == 2 and env.act_dim == 1 and env.obs_dim == 1 and env.horizon == 1


def test_bandit_reward_frequencies_match_p():
    p = np.array([[0.1, 0.5, 0.85]], dtype=np.float32)
    env = Bandit(arms=3)
    env.seed(1)
    B = 30000
    env.reset({"p": p}, B)
    actions = torch.arange(B).remainder(3).unsqueeze(0)  # each arm B/3 times
    _, reward, *_ = env.step(actions)
    for arm in range(3):
        r = reward[0, arm::3]
        se = np.sqrt(p[0, arm] * (1 - p[0, arm]) / r.numel())
        assert abs(r.mean().item() - p[0, arm]) < 4 * se


def hand_mdp():
    # 3 states, 2 actions, deterministic: s0 -a0-> s1, s0 -a1-> s2, s1 -any-> s2, s2 -any-> s0.
    nxt = np.array([[1, 2], [2, 2], [0, 0]])
    transitions = np.eye(3, dtype=np.float32)[nxt][None]  # [1, 3, 2, 3]
    reward_mean = np.array([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]], dtype=np.float32)
    return {"reward_mean": reward_mean, "transitions": transitions}


def test_tabular_mdp_follows_deterministic_transitions_by_hand():
    env = TabularMDP(states=3, actions=2, horizon=4, reward_std=0.0)
    obs = env.reset(hand_mdp(), episodes=2)
    assert obs.shape == (1, 2, 3) and obs[0, :, 0].eq(1).all() and obs.sum(-1).eq(1).all()
    # episode 0: a0 (s0->s1, r 1), a1 (s1->s2, r 4), a0 (s2->s0, r 5), a1 (s0->s2, r 2)
    # episode 1: a1 (s0->s2, r 2), a1 (s2->s0, r 6), a0 (s0->s1, r 1), a0 (s1->s2, r 3)
    plan = [[0, 1], [1, 1], [0, 0], [1, 0]]
    want_rewards = [[1, 2], [4, 6], [5, 1], [2, 3]]
    want_states = [[1, 2], [2, 0], [0, 1], [2, 2]]
    for actions, rewards, states in zip(plan, want_rewards, want_states):
        obs, reward, done, _, _ = env.step(torch.tensor([actions]))
        assert reward[0].tolist() == rewards
        assert obs[0].argmax(-1).tolist() == states and obs.sum(-1).eq(1).all()
        assert not done.any()
    assert env.num_actions == 2 and env.obs_dim == 3 and env.horizon == 4


def test_tabular_mdp_transition_and_reward_statistics_match_the_task():
    tasks = RandomMDPs(states=4, actions=2).sample(1, np.random.default_rng(5))
    env = TabularMDP(states=4, actions=2, reward_std=1.0)
    env.seed(2)
    B = 40000
    env.reset(tasks, B)
    obs, reward, *_ = env.step(torch.ones(1, B, dtype=torch.long))  # action 1 in state 0
    p = tasks["transitions"][0, 0, 1]
    freq = obs[0].mean(0).numpy()
    assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / B) + 1e-9)
    assert abs(reward.mean().item() - tasks["reward_mean"][0, 0, 1]) < 4 / np.sqrt(B)
    assert abs(reward.std().item() - 1.0) < 0.03


def test_tabular_mdp_never_moves_to_a_zero_probability_state():
    transitions = np.zeros((1, 3, 1, 3), dtype=np.float32)
    transitions[0, :, 0] = [0.5, 0.0, 0.5]
    env = TabularMDP(states=3, actions=1, reward_std=0.0)
    env.reset({"reward_mean": np.zeros((1, 3, 1), dtype=np.float32), "transitions": transitions}, 5000)
    for _ in range(5):
        obs, _, *_ = env.step(torch.zeros(1, 5000, dtype=torch.long))
        assert obs[0, :, 1].sum() == 0 and 0.45 < obs[0, :, 2].mean() < 0.55


@pytest.mark.parametrize("make", [lambda: (Bandit(3), BernoulliBandits(3)), lambda: (TabularMDP(), RandomMDPs())],
                         ids=["bandit", "tabular_mdp"])
def test_seed_and_state_dict_reproduce_the_random_stream(make):
    env, dist = make()
    tasks = dist.sample(4, np.random.default_rng(0))

    def stream(steps):
        out = []
        for _ in range(steps):
            obs, reward, *_ = env.step(torch.ones(4, 6, dtype=torch.long))
            out.append(torch.cat([obs.flatten(), reward.flatten()]))
        return torch.stack(out)

    env.seed(7)
    env.reset(tasks, 6)
    first = stream(3)
    env.seed(7)
    env.reset(tasks, 6)
    assert torch.equal(stream(3), first)
    state = env.state_dict()
    assert set(state) >= {"rng", "generator"}
    numpy_draw = env.rng.random()
    env.reset(tasks, 6)
    after = stream(4)
    env.load_state_dict(state)
    assert env.rng.random() == numpy_draw
    env.reset(tasks, 6)
    assert torch.equal(stream(4), after)
    env.seed(8)
    env.reset(tasks, 6)
    assert not torch.equal(stream(3), first)


def test_bad_tasks_and_actions_name_what_to_fix():
    env = Bandit(arms=3)
    with pytest.raises(ConfigError, match="tasks=bandit"):
        env.reset({"goal": np.zeros((2, 2))}, 1)
    with pytest.raises(ConfigError, match="env.arms=3"):
        env.reset({"p": np.zeros((2, 4))}, 1)
    env.reset({"p": np.zeros((2, 3))}, 4)
    with pytest.raises(ValueError, match="actions must have shape"):
        env.step(torch.zeros(2, 4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"integers in \[0, 3\)"):
        env.step(torch.full((2, 4), 3))
    with pytest.raises(ValueError, match=r"integers in \[0, 3\)"):
        env.step(torch.full((2, 4), -1))
    with pytest.raises(ValueError, match="dtype"):
        env.step(torch.zeros(2, 4))
    with pytest.raises(ConfigError, match="env.arms must be an integer >= 2"):
        check_node(Bandit, {"arms": 1}, "env")  # the declared keys (dmrl.keys), checked before anything is built
    mdp = TabularMDP(states=4, actions=2)
    with pytest.raises(ConfigError, match="tasks=tabular_mdp"):
        mdp.reset({"p": np.zeros((2, 3))}, 1)
    with pytest.raises(ConfigError, match="env.states=4"):
        mdp.reset(RandomMDPs(states=5, actions=2).sample(2, np.random.default_rng(0)), 1)
    mdp.reset(RandomMDPs(states=4, actions=2).sample(2, np.random.default_rng(0)), 1)
    with pytest.raises(ValueError, match=r"integers in \[0, 2\)"):
        mdp.step(torch.full((2, 1), 2))
    for kwargs, key in [({"states": 0}, "env.states"), ({"actions": 1.5}, "env.actions"),
                        ({"reward_std": -1.0}, "env.reward_std"), ({"horizon": 0}, "env.horizon")]:
        with pytest.raises(ConfigError, match=key):
            check_node(TabularMDP, kwargs, "env")


def test_task_distributions_ranges_seeding_and_validation():
    tasks = BernoulliBandits(5, low=0.2, high=0.7).sample(4000, task_rng(0, "train"))
    p = tasks["p"]
    assert p.shape == (4000, 5) and p.dtype == np.float32 and p.min() >= 0.2 and p.max() <= 0.7
    assert abs(p.mean() - 0.45) < 4 * 0.5 / np.sqrt(12 * p.size)
    again = BernoulliBandits(5, low=0.2, high=0.7).sample(4000, task_rng(0, "train"))
    assert np.array_equal(p, again["p"])
    assert not np.array_equal(p, BernoulliBandits(5, low=0.2, high=0.7).sample(4000, task_rng(0, "test"))["p"])

    mdps = RandomMDPs().sample(500, task_rng(0, "train"))
    r, t = mdps["reward_mean"], mdps["transitions"]
    assert r.shape == (500, 10, 5) and t.shape == (500, 10, 5, 10) and r.dtype == t.dtype == np.float32
    assert np.allclose(t.sum(-1), 1.0, atol=1e-5) and t.min() >= 0
    assert abs(r.mean() - 1.0) < 4 / np.sqrt(r.size) and abs(r.std() - 1.0) < 0.02
    # Dirichlet(1) over 10 states: each entry has mean 1/10 and variance (1/10)(9/10)/11.
    assert abs(t.mean() - 0.1) < 1e-6 and abs(t.var() - 0.9 / 110) < 5e-4
    assert np.array_equal(r, RandomMDPs().sample(500, task_rng(0, "train"))["reward_mean"])

    for cls, values, key in [(BernoulliBandits, {"arms": 1}, "tasks.arms"),
                             (BernoulliBandits, {"arms": 3, "low": 0.5, "high": 0.2}, "tasks.low"),
                             (BernoulliBandits, {"arms": 3, "high": 1.5}, "tasks.high"),
                             (RandomMDPs, {"states": 0}, "tasks.states"), (RandomMDPs, {"actions": True}, "tasks.actions"),
                             (RandomMDPs, {"reward_mean_std": -1}, "tasks.reward_mean_std"),
                             (RandomMDPs, {"dirichlet_alpha": 0}, "tasks.dirichlet_alpha")]:
        with pytest.raises(ConfigError, match=key):
            check_node(cls, values, "tasks")  # the declared keys (dmrl.keys), checked before anything is built


@pytest.mark.parametrize("family", ["bandit", "tabular_mdp"])
def test_configs_compose_into_matching_env_and_tasks(family):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=[f"env={family}", "env.actions=4" if family == "tabular_mdp"
                                                      else "env.arms=7"])
    env = instantiate(cfg.env, device="cpu")
    tasks = instantiate(cfg.tasks).sample(3, np.random.default_rng(0))
    obs = env.reset(tasks, 2)
    assert obs.shape == (3, 2, env.obs_dim)
    assert env.num_actions == (4 if family == "tabular_mdp" else 7)
    _, reward, *_ = env.step(torch.zeros(3, 2, dtype=torch.long))
    assert reward.shape == (3, 2)
    if family == "bandit":
        assert "horizon" not in cfg.env and env.horizon == 1
