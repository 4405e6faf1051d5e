#!/usr/bin/env python
"""Trial returns of classic policies and per-state bandit heuristics on held-out tabular MDPs.

    python scripts/tabular_heuristics.py --num-tasks 1000 --episodes 10

Plays the same held-out MDPs as `dmrl-eval num_tasks=N seed=S` on an `env=tabular_mdp`
checkpoint: random play and PSRL (the baselines `dmrl-eval` prints), and each state treated as
its own Gaussian bandit (transitions ignored): greedy on the posterior mean (beta 0) and upper
confidence bounds mean + beta * std. It answers how much return remembering the rewards alone
is worth on this task distribution. Two oracles that know the MDP bound what any learner can
reach per episode: the optimal policy, and the best action by immediate reward alone.
"""

from __future__ import annotations

import argparse

import torch

from dmrl.classic.tabular import play, run_per_state_bandit, run_psrl, run_random, value_iteration
from dmrl.envs import TabularMDP
from dmrl.evaluation import summarize
from dmrl.tasks import RandomMDPs
from dmrl.tasks.distributions import task_rng


class Oracle:
    """Acts on the true MDP: optimal over the episode's horizon, or (``myopic``) by immediate reward."""

    def __init__(self, env: TabularMDP, tasks: dict, myopic: bool) -> None:
        reward = torch.as_tensor(tasks["reward_mean"], dtype=torch.float64)
        q = reward.expand(env.horizon, *reward.shape) if myopic else value_iteration(
            reward, torch.as_tensor(tasks["transitions"], dtype=torch.float64), env.horizon)
        self.q, self.rows = q, torch.arange(reward.shape[0])  # q [H, N, S, A]

    def start_episode(self, rng):
        return lambda h, state: self.q[h, self.rows, state].argmax(-1)

    def observe(self, *transition) -> None:
        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-tasks", type=int, default=1000)
    p.add_argument("--episodes", type=int, default=10, help="episodes per trial")
    p.add_argument("--seed", type=int, default=0, help="dmrl-eval's seed: which held-out tasks")
    p.add_argument("--betas", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0])
    args = p.parse_args()
    env = TabularMDP()
    tasks = RandomMDPs().sample(args.num_tasks, task_rng(args.seed, "test"))
    runs = {"random": run_random(env, tasks, args.episodes, args.seed),
            "psrl": run_psrl(env, tasks, args.episodes, args.seed)}
    for beta in args.betas:
        runs[f"per-state bandit, beta {beta:g}"] = run_per_state_bandit(env, tasks, args.episodes, args.seed, beta=beta)
    for name, myopic in (("oracle: optimal policy", False), ("oracle: best immediate reward", True)):
        runs[name] = play(env, tasks, args.episodes, args.seed, Oracle(env, tasks, myopic))
    print(f"{args.num_tasks} held-out MDPs (seed {args.seed}), trials of {args.episodes} episodes")
    print(f"{'policy':<30} {'trial return':>16}  per-episode return")
    for name, returns in runs.items():  # [N, episodes]
        mean, ci = summarize(returns.sum(1, keepdims=True).T)
        episodes = " ".join(f"{x:5.1f}" for x in returns.mean(0))
        print(f"{name:<30} {mean[0]:8.1f} ± {ci[0]:4.1f}  {episodes}")


if __name__ == "__main__":
    main()
