"""Classic baselines against values worked out by hand and Monte-Carlo means within a few standard errors."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from dmrl.classic import classic_baselines, run_classic
from dmrl.classic.bandit import (
    bayes_optimal_fits,
    bayes_optimal_states,
    bayes_optimal_value,
    run_bayes_optimal,
    run_epsilon_greedy,
    run_greedy,
    run_random,
    run_thompson,
    run_ucb1,
)
from dmrl.classic.tabular import run_per_state_bandit, run_psrl, value_iteration
from dmrl.classic.tabular import run_random as run_random_mdp
from dmrl.envs import Bandit, PointNav, TabularMDP
from dmrl.tasks import BernoulliBandits, RandomMDPs, task_rng


def within(samples: np.ndarray, value: float, k: float = 4.0) -> bool:
    """The mean of ``samples`` is within ``k`` standard errors of ``value``."""
    return abs(samples.mean() - value) < k * samples.std(ddof=1) / np.sqrt(len(samples))


def deterministic_arms(n_tasks: int) -> dict:
    return {"p": np.tile(np.array([[0.0, 1.0]], dtype=np.float32), (n_tasks, 1))}


def test_bayes_optimal_dp_exact_values():
    assert bayes_optimal_value(2, 1, exact=True) == Fraction(1, 2)
    # First pull 1/2; after a success keep the arm (2/3 > 1/2), after a failure switch (1/2 > 1/3):
    # 1/2 + 1/2 * 2/3 + 1/2 * 1/2 = 13/12.
    assert bayes_optimal_value(2, 2, exact=True) == Fraction(13, 12)
    assert bayes_optimal_value(1, 7, exact=True) == Fraction(7, 2)  # one arm: nothing to learn
    assert bayes_optimal_value(2, 2) == pytest.approx(13 / 12, abs=1e-15)
    # With 10 pulls at most 10 arms are ever touched: more arms than pulls change nothing.
    assert bayes_optimal_value(50, 10) == pytest.approx(bayes_optimal_value(10, 10), abs=1e-12)
    assert bayes_optimal_value(5, 10) > bayes_optimal_value(2, 10) > 5.0
    # Table sizes, counted: k=2, n=1 has {(0,0),(0,0)}, {(0,0),(1,0)}, {(0,0),(0,1)}.
    assert bayes_optimal_states(2, 1) == 3 and bayes_optimal_states(5, 10) == 3519
    assert bayes_optimal_fits(5, 10) and not bayes_optimal_fits(5, 30) and not bayes_optimal_fits(2, 10**6)


@pytest.mark.parametrize("arms,pulls", [(2, 5), (3, 4)])
def test_bayes_optimal_policy_in_the_env_earns_its_dp_value(arms, pulls):
    tasks = BernoulliBandits(arms).sample(20000, task_rng(1, "test"))
    totals = run_bayes_optimal(Bandit(arms), tasks, pulls, seed=1).sum(1)
    assert within(totals, bayes_optimal_value(arms, pulls))


def test_thompson_greedy_and_random_expected_totals_for_two_arms_two_pulls():
    # Thompson: after a success the pulled arm is Beta(2, 1) against Beta(1, 1) and wins with
    # probability E[theta] = 2/3, paying 2/3 (kept) or 1/2 (switched): 2/3 * 2/3 + 1/3 * 1/2 = 11/18;
    # after a failure it wins with probability 1/3: 1/3 * 1/3 + 2/3 * 1/2 = 4/9.
    # Total 1/2 + (11/18 + 4/9) / 2 = 37/36. Greedy is Bayes-optimal here (13/12), random earns 1.
    env = Bandit(2)
    tasks = BernoulliBandits(2).sample(40000, task_rng(2, "test"))
    assert within(run_thompson(env, tasks, 2, seed=2).sum(1), 37 / 36)
    assert within(run_greedy(env, tasks, 2, seed=2).sum(1), 13 / 12)
    assert within(run_random(env, tasks, 2, seed=2).sum(1), 1.0)


def test_ucb1_pulls_the_arms_worked_out_by_hand():
    # Arms p = [0, 1], so each reward is the index of the pulled arm. Both start tied (1/2 +
    # sqrt(2 ln 4 / 2)), broken at random. Then, e.g., after arm 1 at pull 0: n = [2, 3], t = 5,
    # index 0 = 1/2 + sqrt(2 ln 5 / 2) = 1.769 > index 1 = 2/3 + sqrt(2 ln 5 / 3) = 1.703: arm 0.
    # Arm 1 then leads until pull 9: n = [3, 10], t = 13, index 0 = 1/3 + sqrt(2 ln 13 / 3) = 1.641
    # > index 1 = 9/10 + sqrt(2 ln 13 / 10) = 1.616 (at pull 8: 1.620 < 8/9 + sqrt(2 ln 12 / 9) = 1.632).
    ones = [1] * 8
    by_hand = {(0, 1, *ones[:7], 0, *ones), (1, 0, *ones[:7], 0, *ones)}
    rewards = run_ucb1(Bandit(2), deterministic_arms(64), 18, seed=3)
    rows = {tuple(int(r) for r in row) for row in rewards}
    assert rows == by_hand  # both tie-breaks happen among 64 tasks


def test_greedy_and_epsilon_greedy_on_deterministic_arms():
    # Greedy: a random first pull; arm 1 (success) is then kept for good, arm 0 (failure, mean
    # 1/3 < 1/2) is left for arm 1 at once.
    rewards = run_greedy(Bandit(2), deterministic_arms(64), 10, seed=4)
    assert {tuple(int(r) for r in row) for row in rewards} == {(1,) * 10, (0,) + (1,) * 9}
    # Epsilon-greedy: from pull 1 on the greedy arm is always arm 1 (arm 0 never pays), so a pull
    # pays unless it explores (epsilon) and draws arm 0 (1/2): 1 - epsilon / 2.
    rewards = run_epsilon_greedy(Bandit(2), deterministic_arms(4000), 20, seed=4, epsilon=0.2)
    assert within(rewards[:, 1:].reshape(-1), 0.9)
    assert within(rewards[:, 0], 0.5)
    rewards = run_epsilon_greedy(Bandit(2), deterministic_arms(64), 10, seed=4, epsilon=0.0)
    assert {tuple(int(r) for r in row) for row in rewards} == {(1,) * 10, (0,) + (1,) * 9}


def test_bandit_baselines_order_on_five_arms_ten_pulls():
    N, n = 3000, 10
    tasks = BernoulliBandits(5).sample(N, task_rng(0, "test"))
    totals = {name: r.sum(1) for name, r in run_classic(Bandit(5), tasks, n, seed=0).items()}
    assert set(totals) == {"random", "greedy", "epsilon_greedy", "ucb1", "thompson", "bayes_optimal"}
    assert within(totals["random"], n / 2)
    assert within(totals["bayes_optimal"], bayes_optimal_value(5, n))
    for name, total in totals.items():
        if name != "bayes_optimal":  # paired differences: the same tasks and the same reward coins
            diff = totals["bayes_optimal"] - total
            assert diff.mean() > -4 * diff.std(ddof=1) / np.sqrt(N), name
        if name != "random":
            diff = total - totals["random"]
            assert diff.mean() > 4 * diff.std(ddof=1) / np.sqrt(N), name


def test_value_iteration_matches_a_hand_solved_mdp():
    # s0: a0 pays 1 and stays (task 1: goes to s0 or s1 with 1/2 each), a1 pays 0 and goes to s1;
    # s1: a0 pays 2 and stays, a1 pays 0 and goes to s0. Horizon 3.
    P = torch.zeros(2, 2, 2, 2, dtype=torch.float64)
    P[:, 0, 0, 0] = 1.0
    P[1, 0, 0] = torch.tensor([0.5, 0.5], dtype=torch.float64)
    P[:, 0, 1, 1] = P[:, 1, 0, 1] = P[:, 1, 1, 0] = 1.0
    R = torch.tensor([[1.0, 0.0], [2.0, 0.0]], dtype=torch.float64).expand(2, 2, 2)
    Q = value_iteration(R, P, 3)
    # Last step: Q = R. One step to go after it (V = [1, 2]): task 0 s0 [1 + 1, 0 + 2], s1 [2 + 2, 0 + 1];
    # task 1 s0 a0 = 1 + (1 + 2) / 2 = 2.5. First step (task 0 V = [2, 4], task 1 V = [2.5, 4]):
    # task 0 s0 [3, 4], s1 [6, 2]; task 1 s0 [1 + (2.5 + 4) / 2, 4] = [4.25, 4], s1 [6, 2.5].
    want = torch.tensor([[[[3, 4], [6, 2]], [[4.25, 4], [6, 2.5]]],
                         [[[2, 2], [4, 1]], [[2.5, 2], [4, 1]]],
                         [[[1, 0], [2, 0]], [[1, 0], [2, 0]]]], dtype=torch.float64)
    assert torch.equal(Q, want)


def test_psrl_beats_random_on_random_mdps_and_is_reproducible():
    N, n = 300, 10
    env = TabularMDP()
    tasks = RandomMDPs().sample(N, task_rng(0, "test"))
    env.seed(123)
    before = env.state_dict()
    psrl = run_psrl(env, tasks, n, seed=0)
    random = run_random_mdp(env, tasks, n, seed=0)
    assert psrl.shape == random.shape == (N, n)
    # A uniformly random policy earns the prior mean reward, 1 per step: ~100 over the trial.
    assert within(random.sum(1), n * env.horizon * 1.0)
    diff = psrl.sum(1) - random.sum(1)
    assert diff.mean() > 20 and diff.mean() > 4 * diff.std(ddof=1) / np.sqrt(N)
    # PSRL learns within the trial: its last episodes beat its first.
    assert psrl[:, -3:].mean() > psrl[:, 0].mean() + 1.0
    assert np.array_equal(run_psrl(env, tasks, n, seed=0), psrl)
    assert env.state_dict()["rng"] == before["rng"] and torch.equal(env.state_dict()["generator"], before["generator"])


def test_per_state_bandit_by_hand_on_a_noiseless_one_state_mdp():
    # One state, reward means [0.5, 2, 3, 0, 0], no noise: one visit pins a mean (prior N(1, 1)).
    env = TabularMDP(states=1, horizon=10, reward_std=0.0)
    tasks = {"reward_mean": np.array([[[0.5, 2.0, 3.0, 0.0, 0.0]]]), "transitions": np.ones((1, 1, 5, 1))}
    # Greedy (beta 0): untried arms score the prior mean 1. Arm 0 (ties go to the first) pays 0.5 < 1,
    # so it tries arm 1, which pays 2 > 1 and is kept: 0.5 + 9 * 2 = 18.5 in episode 1, then 20.
    greedy = run_per_state_bandit(env, tasks, 2, seed=0, beta=0.0)
    np.testing.assert_allclose(greedy, [[18.5, 20.0]])
    # UCB (beta 2): untried arms score 1 + 2 * 1 = 3 > 2, so after arms 0 and 1 it tries arm 2, whose
    # pinned 3 ties the untried arms 3 and 4 and comes first: it is kept.
    ucb = run_per_state_bandit(env, tasks, 2, seed=0, beta=2.0)
    np.testing.assert_allclose(ucb, [[0.5 + 2.0 + 8 * 3.0, 30.0]])


def test_per_state_bandit_beats_psrl_on_random_mdps():
    N, n = 300, 10
    env = TabularMDP()
    tasks = RandomMDPs().sample(N, task_rng(0, "test"))
    diff = run_per_state_bandit(env, tasks, n, seed=0).sum(1) - run_psrl(env, tasks, n, seed=0).sum(1)
    assert diff.mean() > 10 and diff.mean() > 4 * diff.std(ddof=1) / np.sqrt(N)


def test_registry_picks_the_baselines_of_each_family():
    assert set(classic_baselines(Bandit(5), 10)) == {"random", "greedy", "epsilon_greedy", "ucb1", "thompson",
                                                     "bayes_optimal"}
    assert "bayes_optimal" not in classic_baselines(Bandit(5), 40)
    assert set(classic_baselines(TabularMDP())) == {"random", "psrl"}
    assert classic_baselines(PointNav()) == {}
    tasks = RandomMDPs().sample(4, np.random.default_rng(0))
    out = run_classic(TabularMDP(), tasks, 3, seed=0)
    assert set(out) == {"random", "psrl"} and all(r.shape == (4, 3) for r in out.values())
    with pytest.raises(TypeError, match="Bandit"):
        run_greedy(TabularMDP(), tasks, 3, seed=0)
