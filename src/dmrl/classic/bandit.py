"""Classic policies for Bernoulli bandits, acting in :class:`dmrl.envs.Bandit`.

The references of Duan et al. 2016 (RL², Table 1): random, greedy, epsilon-greedy, UCB1
(Auer et al. 2002) and Thompson sampling (Thompson 1933), all with a Beta(1, 1) prior on every
arm, plus the exact Bayes-optimal finite-horizon policy by dynamic programming over the Beta
posteriors (the paper's "Gittins" row stands for the same idea; Gittins indices are optimal
for the discounted infinite horizon, the DP is optimal for exactly ``n`` pulls).

Every ``run_*(env, tasks, n, seed)`` plays one trial of ``n`` pulls on each of the ``N`` tasks,
all tasks at once, and returns each pull's reward ``[N, n]`` (an episode is one pull). The env
is seeded with ``seed`` (so all policies see the same reward coins: pull ``t`` of task ``i``
pays iff the same uniform draw is below the chosen arm's ``p``) and its random state is put
back afterwards; the policies' own coins come from a separate stream of ``seed``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import torch

from dmrl.envs.bandit import Bandit
from dmrl.tasks.distributions import Tasks

# A policy: (successes [N, k], failures [N, k], remaining pulls, rng) -> arms [N].
Choose = Callable[[np.ndarray, np.ndarray, int, np.random.Generator], np.ndarray]

# Largest DP table (canonical posterior states, see bayes_optimal_states) for which the exact
# Bayes-optimal policy is offered. Measured on one busy CPU core: k=5, n=10 has 3.5e3 states
# (0.1 s); k=5, n=15 4.5e4 (0.9 s); k=5, n=20 3.5e5 (13 s, a few hundred MB). The limit allows
# n <= 53 pulls for k=2, 27 for k=3, 18 for k=5, 16 for k >= 10 (a few seconds).
MAX_DP_STATES = 200_000


# Spawn key of the policies' stream: the task streams use (0,) and (1,) (dmrl.tasks.task_rng), so
# with spawn_key=(1,) a policy breaking ties with the "test" stream of the same seed would see the
# tasks' own p values and pick the best arm. 0xC1A55 ("classic") is used by nothing else.
POLICY_SPAWN_KEY = (0xC1A55,)


def policy_rng(seed: int) -> np.random.Generator:
    """The policies' own random stream for ``seed``, disjoint from the env's and the task streams."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=POLICY_SPAWN_KEY))


def argmax_random_ties(scores: np.ndarray, rng: np.random.Generator, atol: float = 1e-12) -> np.ndarray:
    """Per row of ``scores [N, k]``, an index of a maximum, chosen uniformly among tied maxima."""
    tied = scores >= scores.max(axis=1, keepdims=True) - atol
    return np.where(tied, rng.random(scores.shape), -1.0).argmax(axis=1)


def play(env: Bandit, tasks: Tasks, n: int, seed: int, choose: Choose) -> np.ndarray:
    """One trial of ``n`` pulls per task with ``choose``; each pull's reward, ``[N, n]``."""
    if not isinstance(env, Bandit):
        raise TypeError(f"bandit baselines need a dmrl.envs.Bandit, got {type(env).__name__}")
    saved = env.state_dict()
    env.seed(seed)
    rng = policy_rng(seed)
    N, k = np.shape(tasks["p"])[0], env.arms
    successes, failures = np.zeros((N, k)), np.zeros((N, k))
    rewards = np.zeros((N, n))
    rows = np.arange(N)
    try:
        for t in range(n):
            env.reset(tasks, 1)
            arms = choose(successes, failures, n - t, rng)
            _, reward, *_ = env.step(torch.as_tensor(arms, dtype=torch.long, device=env.device).reshape(N, 1))
            r = reward[:, 0].double().cpu().numpy()
            successes[rows, arms] += r
            failures[rows, arms] += 1.0 - r
            rewards[:, t] = r
    finally:
        env.load_state_dict(saved)
    return rewards


def posterior_mean(successes: np.ndarray, failures: np.ndarray) -> np.ndarray:
    """Mean of Beta(1 + s, 1 + f)."""
    return (1.0 + successes) / (2.0 + successes + failures)


def choose_random(successes, failures, remaining, rng):
    return rng.integers(successes.shape[1], size=successes.shape[0])


def choose_greedy(successes, failures, remaining, rng):
    return argmax_random_ties(posterior_mean(successes, failures), rng)


def choose_epsilon_greedy(successes, failures, remaining, rng, epsilon: float = 0.1):
    explore = rng.random(successes.shape[0]) < epsilon
    greedy = choose_greedy(successes, failures, remaining, rng)
    return np.where(explore, choose_random(successes, failures, remaining, rng), greedy)


def choose_ucb1(successes, failures, remaining, rng, c: float = 1.0):
    # UCB1 (Auer et al. 2002): mean + c sqrt(2 ln t / n_i), where each arm starts as if pulled
    # twice, once with success and once with failure (the Beta(1, 1) prior), so n_i >= 2 and
    # t = sum_i n_i counts those pseudo-pulls.
    pulls = 2.0 + successes + failures  # [N, k]
    t = pulls.sum(axis=1, keepdims=True)
    return argmax_random_ties((1.0 + successes) / pulls + c * np.sqrt(2.0 * np.log(t) / pulls), rng)


def choose_thompson(successes, failures, remaining, rng):
    return rng.beta(1.0 + successes, 1.0 + failures).argmax(axis=1)


# Bayes-optimal: V(x, r) = max_i [m_i (1 + V(x + success_i, r - 1)) + (1 - m_i) V(x + failure_i, r - 1)],
# m_i = (1 + s_i) / (2 + s_i + f_i), V(x, 0) = 0, over posterior states x = ((s_1, f_1), ..., (s_k, f_k)).
# Arms are exchangeable under the prior, so V depends on x only as a multiset: states are kept
# sorted, which cuts the table by up to k!.

State = tuple[tuple[int, int], ...]


def _canonical(state: State, i: int, outcome: tuple[int, int]) -> State:
    return tuple(sorted(state[:i] + (outcome,) + state[i + 1:]))


@functools.cache
def _q_values(state: State, remaining: int, exact: bool) -> tuple:
    """Q of pulling each arm of the canonical ``state`` with ``remaining`` pulls left (incl. this one)."""
    q = []
    for i, (s, f) in enumerate(state):
        if i and state[i - 1] == (s, f):
            q.append(q[-1])
            continue
        m = Fraction(1 + s, 2 + s + f) if exact else (1.0 + s) / (2.0 + s + f)
        win = _value(_canonical(state, i, (s + 1, f)), remaining - 1, exact)
        lose = _value(_canonical(state, i, (s, f + 1)), remaining - 1, exact)
        q.append(m * (1 + win) + (1 - m) * lose)
    return tuple(q)


@functools.cache
def _value(state: State, remaining: int, exact: bool):
    if remaining == 0:
        return Fraction(0) if exact else 0.0
    return max(_q_values(state, remaining, exact))


def bayes_optimal_value(arms: int, pulls: int, exact: bool = False) -> float | Fraction:
    """Expected total reward of the Bayes-optimal policy over ``pulls`` pulls of ``arms`` arms,
    with ``p_i ~ U[0, 1]`` independently (a ``Fraction`` when ``exact``)."""
    return _value(((0, 0),) * arms, pulls, exact)


def bayes_optimal_states(arms: int, pulls: int) -> int:
    """Size of the DP table for ``arms`` arms and ``pulls`` pulls: the multisets of ``arms`` pairs
    (s, f) with total s + f <= pulls (counted, not built)."""
    # Such a multiset is j <= min(arms, pulls) pairs of nonzero weight s + f, padded with (0, 0).
    # count[j, m] = multisets of j nonzero pairs with total m, built one pair type at a time; j
    # ascends so that count[j - 1] already holds this type and a type may repeat.
    J = min(arms, pulls)
    count = np.zeros((J + 1, pulls + 1))
    count[0, 0] = 1.0
    for weight in range(1, pulls + 1):
        for _ in range(weight + 1):  # the weight + 1 pair types (s, f) with s + f = weight
            for j in range(1, J + 1):
                count[j, weight:] += count[j - 1, :pulls + 1 - weight]
    return round(float(count.sum()))


def bayes_optimal_fits(arms: int, pulls: int) -> bool:
    """Whether the DP table has at most MAX_DP_STATES states."""
    # C(pulls + 4, 4) / 2 is a lower bound for any arms >= 2 (ordered pairs of 2 arms' (s, f),
    # each multiset counted at most twice): it rules out long trials before counting.
    return math.comb(pulls + 4, 4) // 2 <= MAX_DP_STATES and bayes_optimal_states(arms, pulls) <= MAX_DP_STATES


def choose_bayes_optimal(successes, failures, remaining, rng):
    arms = []
    for s_row, f_row in zip(successes.astype(int), failures.astype(int)):
        pairs = list(zip(s_row.tolist(), f_row.tolist()))
        state = tuple(sorted(pairs))
        q = _q_values(state, remaining, False)
        best = max(q)
        optimal = {pair for pair, value in zip(state, q) if value >= best - 1e-9}
        candidates = [i for i, pair in enumerate(pairs) if pair in optimal]
        arms.append(candidates[rng.integers(len(candidates))])
    return np.asarray(arms)


def run_random(env: Bandit, tasks: Tasks, n: int, seed: int) -> np.ndarray:
    return play(env, tasks, n, seed, choose_random)


def run_greedy(env: Bandit, tasks: Tasks, n: int, seed: int) -> np.ndarray:
    return play(env, tasks, n, seed, choose_greedy)


def run_epsilon_greedy(env: Bandit, tasks: Tasks, n: int, seed: int, epsilon: float = 0.1) -> np.ndarray:
    return play(env, tasks, n, seed, functools.partial(choose_epsilon_greedy, epsilon=epsilon))


def run_ucb1(env: Bandit, tasks: Tasks, n: int, seed: int, c: float = 1.0) -> np.ndarray:
    return play(env, tasks, n, seed, functools.partial(choose_ucb1, c=c))


def run_thompson(env: Bandit, tasks: Tasks, n: int, seed: int) -> np.ndarray:
    return play(env, tasks, n, seed, choose_thompson)


def run_bayes_optimal(env: Bandit, tasks: Tasks, n: int, seed: int) -> np.ndarray:
    if not bayes_optimal_fits(env.arms, n):
        raise ValueError(f"the Bayes-optimal DP for {env.arms} arms and {n} pulls has more than "
                         f"MAX_DP_STATES={MAX_DP_STATES} states")
    return play(env, tasks, n, seed, choose_bayes_optimal)


def bandit_baselines(arms: int, n: int | None = None) -> dict[str, Callable[..., np.ndarray]]:
    """The bandit baselines; ``bayes_optimal`` only where its table is small enough for ``n`` pulls."""
    runs = {"random": run_random, "greedy": run_greedy, "epsilon_greedy": run_epsilon_greedy, "ucb1": run_ucb1,
            "thompson": run_thompson}
    if n is None or bayes_optimal_fits(arms, n):
        runs["bayes_optimal"] = run_bayes_optimal
    return runs


__all__ = ["MAX_DP_STATES", "argmax_random_ties", "bandit_baselines", "bayes_optimal_fits", "bayes_optimal_states", "bayes_optimal_value",
           "play", "policy_rng", "run_bayes_optimal", "run_epsilon_greedy", "run_greedy", "run_random",
           "run_thompson", "run_ucb1"]
