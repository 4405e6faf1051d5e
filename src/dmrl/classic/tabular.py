"""Classic policies for random tabular MDPs, acting in :class:`dmrl.envs.TabularMDP`.

The references of Duan et al. 2016 (RL², Table 2): a uniformly random policy and posterior
sampling for reinforcement learning (PSRL, Osband, Russo and Van Roy 2013, "(More) efficient
reinforcement learning via posterior sampling"): at the start of each episode sample one MDP
from the posterior, solve it over the episode's horizon and follow its optimal policy for the
whole episode.

``run_*(env, tasks, n, seed)`` plays one trial of ``n`` episodes of ``env.horizon`` steps on
each of the ``N`` tasks, all tasks at once, and returns each episode's return ``[N, n]``. As for
the bandit baselines, the env is seeded with ``seed`` and its random state put back afterwards;
the policies draw from a separate stream of ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from dmrl.classic.bandit import policy_rng
from dmrl.envs.tabular_mdp import TabularMDP
from dmrl.tasks.distributions import Tasks


def value_iteration(reward: Tensor, transitions: Tensor, horizon: int) -> Tensor:
    """Finite-horizon optimal action values ``Q [H, N, S, A]`` of ``N`` MDPs, undiscounted.

    ``reward [N, S, A]`` expected rewards, ``transitions [N, S, A, S]``; ``Q[h]`` is the value of
    acting at step ``h`` (``H - h`` steps to go): ``Q[h] = r + P V[h + 1]``, ``V[H] = 0``.
    """
    N, S, _ = reward.shape
    value = reward.new_zeros(N, S)  # [N, S]: V[h + 1]
    q = []
    for _ in range(horizon):
        q_h = reward + torch.einsum("nsat,nt->nsa", transitions, value)  # [N, S, A]
        q.append(q_h)
        value = q_h.amax(-1)
    return torch.stack(q[::-1])


def play(env: TabularMDP, tasks: Tasks, n: int, seed: int, policy) -> np.ndarray:
    """Each episode ``policy.start_episode(rng)`` gives ``act(step, states [N]) -> actions [N]``;
    ``policy.observe(states, actions, rewards, next_states)`` sees every transition."""
    if not isinstance(env, TabularMDP):
        raise TypeError(f"tabular baselines need a dmrl.envs.TabularMDP, got {type(env).__name__}")
    saved = env.state_dict()
    env.seed(seed)
    rng = policy_rng(seed)
    returns = np.zeros((np.shape(tasks["reward_mean"])[0], n))
    try:
        for episode in range(n):
            act = policy.start_episode(rng)
            state = env.reset(tasks, 1)[:, 0].argmax(-1)  # [N]
            for h in range(env.horizon):
                action = act(h, state)
                obs, reward, *_ = env.step(action.unsqueeze(1))
                next_state = obs[:, 0].argmax(-1)
                policy.observe(state, action, reward[:, 0], next_state)
                returns[:, episode] += reward[:, 0].double().cpu().numpy()
                state = next_state
    finally:
        env.load_state_dict(saved)
    return returns


class RandomPolicy:
    def __init__(self, env: TabularMDP, num_tasks: int) -> None:
        self.env, self.num_tasks = env, num_tasks

    def start_episode(self, rng: np.random.Generator) -> Callable[[int, Tensor], Tensor]:
        def act(h: int, state: Tensor) -> Tensor:
            return torch.as_tensor(rng.integers(self.env.actions, size=self.num_tasks), device=self.env.device)
        return act

    def observe(self, state, action, reward, next_state) -> None:
        pass


class PSRL:
    """Posterior sampling (Osband et al. 2013) with the RL² task prior as its prior.

    Transitions: each row ``Dirichlet(dirichlet_prior + counts)``. Reward means: the prior
    ``N(prior_mean, prior_std^2)`` with Gaussian noise of known standard deviation
    ``noise_std`` (the env's ``reward_std`` by default) gives the conjugate Normal posterior
    with precision ``1/prior_std^2 + visits/noise_std^2``.
    """

    def __init__(self, env: TabularMDP, num_tasks: int, prior_mean: float = 1.0, prior_std: float = 1.0,
                 noise_std: float | None = None, dirichlet_prior: float = 1.0) -> None:
        S, A = env.states, env.actions
        self.env, self.N = env, num_tasks
        self.prior_mean, self.prior_precision = prior_mean, 1.0 / prior_std**2
        noise_std = env.reward_std if noise_std is None else noise_std
        # Noiseless rewards: a huge precision, so one visit pins the mean.
        self.noise_precision = 1.0 / max(noise_std**2, 1e-12)
        self.dirichlet_prior = dirichlet_prior
        self.counts = np.zeros((num_tasks, S, A, S))  # transitions seen
        self.visits = np.zeros((num_tasks, S, A))
        self.reward_sum = np.zeros((num_tasks, S, A))
        self.rows = np.arange(num_tasks)

    def reward_posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Normal posterior over each reward mean: ``mean [N, S, A]`` and ``precision [N, S, A]``."""
        precision = self.prior_precision + self.visits * self.noise_precision
        mean = (self.prior_precision * self.prior_mean + self.noise_precision * self.reward_sum) / precision
        return mean, precision

    def sample_mdp(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One MDP per task from the posterior: ``reward [N, S, A]``, ``transitions [N, S, A, S]``."""
        gammas = rng.standard_gamma(self.dirichlet_prior + self.counts)
        transitions = gammas / np.maximum(gammas.sum(-1, keepdims=True), 1e-300)
        mean, precision = self.reward_posterior()
        reward = mean + rng.standard_normal(mean.shape) / np.sqrt(precision)
        return reward, transitions

    def start_episode(self, rng: np.random.Generator) -> Callable[[int, Tensor], Tensor]:
        reward, transitions = self.sample_mdp(rng)
        dtype, device = torch.float64, self.env.device
        q = value_iteration(torch.as_tensor(reward, dtype=dtype, device=device),
                            torch.as_tensor(transitions, dtype=dtype, device=device), self.env.horizon)  # [H, N, S, A]
        tasks = torch.arange(self.N, device=device)

        def act(h: int, state: Tensor) -> Tensor:
            return q[h, tasks, state].argmax(-1)
        return act

    def observe(self, state: Tensor, action: Tensor, reward: Tensor, next_state: Tensor) -> None:
        s, a, s2 = (x.cpu().numpy() for x in (state, action, next_state))
        # One episode per task: (task, s, a) indices are distinct, so fancy-index += is exact.
        self.counts[self.rows, s, a, s2] += 1.0
        self.visits[self.rows, s, a] += 1.0
        self.reward_sum[self.rows, s, a] += reward.double().cpu().numpy()


class PerStateBandit:
    """Each state as its own Gaussian bandit, transitions ignored (a heuristic, not in RL²'s table).

    In every state take ``argmax_a mean(s, a) + beta * std(s, a)`` of the same Normal posterior
    over reward means as :class:`PSRL` (``beta = 0``: greedy on the posterior mean; ``beta > 0``:
    an upper confidence bound). On the RL² task distribution the best action by immediate reward
    is nearly optimal (Dirichlet(1) transitions leave little to plan), so this is a strong
    reference for how much a learner could gain from remembering rewards alone.
    """

    def __init__(self, env: TabularMDP, num_tasks: int, beta: float = 1.0, prior_mean: float = 1.0,
                 prior_std: float = 1.0) -> None:
        self.posterior = PSRL(env, num_tasks, prior_mean=prior_mean, prior_std=prior_std)
        self.beta = float(beta)

    def start_episode(self, rng: np.random.Generator) -> Callable[[int, Tensor], Tensor]:
        p = self.posterior

        def act(h: int, state: Tensor) -> Tensor:  # scores from everything seen so far, this episode included
            mean, precision = p.reward_posterior()
            score = (mean + self.beta / np.sqrt(precision))[p.rows, state.cpu().numpy()]  # [N, A]
            return torch.as_tensor(score.argmax(-1), device=p.env.device)
        return act

    def observe(self, state: Tensor, action: Tensor, reward: Tensor, next_state: Tensor) -> None:
        self.posterior.observe(state, action, reward, next_state)


def run_random(env: TabularMDP, tasks: Tasks, n: int, seed: int) -> np.ndarray:
    return play(env, tasks, n, seed, RandomPolicy(env, np.shape(tasks["reward_mean"])[0]))


def run_psrl(env: TabularMDP, tasks: Tasks, n: int, seed: int, **prior) -> np.ndarray:
    return play(env, tasks, n, seed, PSRL(env, np.shape(tasks["reward_mean"])[0], **prior))


def run_per_state_bandit(env: TabularMDP, tasks: Tasks, n: int, seed: int, **kwargs) -> np.ndarray:
    return play(env, tasks, n, seed, PerStateBandit(env, np.shape(tasks["reward_mean"])[0], **kwargs))


def tabular_baselines() -> dict[str, Callable[..., np.ndarray]]:
    return {"random": run_random, "psrl": run_psrl}
