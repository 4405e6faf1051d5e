"""A uniformly random policy on any batched env: the floor every meta-learner must clear.

``dmrl-eval env=ENV policy=random`` (conf/policy/random.yaml) scores it on the held-out tasks a
checkpoint of ``ENV`` meets at the same seed (:func:`dmrl.evaluation.meta_test`). It is a learner
of the contract (:mod:`dmrl.learner`) that learns nothing: ``meta_test`` rolls out every episode
of every task in one batched env, one action draw per time step for all of them, and reports an
:class:`~dmrl.learner.AdaptationResult`.

Actions: continuous envs, uniform over the box the env clips actions to
(:meth:`~dmrl.envs.BatchedEnv.action_bounds`: point_nav's ``[-1, 1]`` with normalized actions or
``[-max_action, max_action]`` without, the MuJoCo actuators' ``ctrlrange``), so the policy is
uniform over what the env does; discrete envs, uniform over ``num_actions``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from dmrl.envs.base import BatchedEnv
from dmrl.errors import ConfigError
from dmrl.keys import SEED
from dmrl.learner import AdaptationResult, MetaTestBudget
from dmrl.samplers.batched import SeededSampler, roll_out
from dmrl.samplers.episodes import Episodes
from dmrl.tasks.distributions import Tasks

# Episodes per task when ``episodes`` is not given: the shortest trial of the RL² paper's
# bandits and tabular MDPs (n = 10, Duan et al. 2016, Tables 1-2), which is also the rl2_bandit
# preset's; on a continuous env, the per-task mean is over 10 episodes.
DEFAULT_EPISODES = 10


class UniformPolicy:
    """Uniform actions, no adaptation. ``sampler`` is the env and the action-noise generator,
    seeded together from one number as every learner's sampler is."""

    FILMS = False  # dmrl-eval video=true films gradient-based adaptation; there is none here
    KEYS = {"seed": SEED}  # dmrl.keys; the env is given at run time (conf/policy/random.yaml: _partial_)

    def __init__(self, env: BatchedEnv, seed: int = 0) -> None:
        if env.num_actions is None:
            try:
                low, high = env.action_bounds()
            except NotImplementedError as e:
                raise ConfigError(f"env: policy=random needs the env's action range: {e}") from None
            self.low = torch.as_tensor(np.asarray(low), dtype=torch.get_default_dtype(), device=env.device)
            self.high = torch.as_tensor(np.asarray(high), dtype=torch.get_default_dtype(), device=env.device)
        self.sampler = SeededSampler(env, seed)

    def actions(self, shape: tuple[int, int]) -> Tensor:
        """Uniform actions ``[N, B]`` (discrete) or ``[N, B, act_dim]`` (continuous)."""
        env, gen = self.sampler.env, self.sampler.generator
        if env.num_actions is not None:
            return torch.randint(env.num_actions, shape, generator=gen, device=env.device)
        u = torch.rand((*shape, env.act_dim), generator=gen, device=env.device, dtype=self.low.dtype)
        return self.low + (self.high - self.low) * u

    def episodes(self, tasks: Tasks, episodes: int) -> Episodes:
        """``episodes`` episodes of each task, all stepped together (the samplers' time loop).  # [T, N, B]"""
        return roll_out(self.sampler.env, tasks, episodes, lambda obs: self.actions(tuple(obs.shape[:2])))

    def episode_returns(self, tasks: Tasks, episodes: int) -> Tensor:
        """Undiscounted return of ``episodes`` episodes of each task.  # [N, B]

        As the learners' samplers count it: a step's reward counts while its episode runs.
        """
        return self.episodes(tasks, episodes).rewards.sum(0)

    def meta_test(self, tasks: Tasks, budget: MetaTestBudget) -> AdaptationResult:
        """``budget.episodes`` episodes per task (null: :data:`DEFAULT_EPISODES`).

        The axis is the one the env's learners report, so the numbers sit next to theirs: on a
        discrete env (bandit, tabular MDP; learned by RL² only, MAML refuses discrete actions) the
        episodes are one trial, ``returns [E, N]`` per episode and the objective is the trial's
        return, which also brings the env's classic baselines (:mod:`dmrl.classic`) on the same
        tasks, as for an RL² checkpoint. On a continuous env it is one point of the inner-step axis,
        the mean episode return of each task ``[1, N]``: MAML's step 0, since a random policy
        does not adapt (a per-episode axis would show a flat line and a "trial" sum no learner
        reports there).
        """
        episodes = int(budget.eval_episodes or budget.episodes or DEFAULT_EPISODES)
        ep = self.episodes(tasks, episodes)
        returns = ep.rewards.sum(0).double().cpu().numpy()  # [N, E] (rewards are zero after an episode ends)
        extras = {"episodes_per_task": episodes}
        if self.sampler.env.num_actions is not None:
            return AdaptationResult(axis="episode", returns=returns.T, objective_name="heldout/trial_return",
                                    objective=lambda r: r.sum(0), extras=extras)
        success = None if ep.task_success is None else ep.task_success.cpu().numpy()[None]  # [1, N]
        return AdaptationResult(axis="inner_step", returns=returns.mean(1)[None], objective_name="heldout/return",
                                objective=lambda r: r[-1], success=success, extras=extras)

    def final_budget(self) -> MetaTestBudget:
        return MetaTestBudget(episodes=DEFAULT_EPISODES)


__all__ = ["DEFAULT_EPISODES", "UniformPolicy"]
