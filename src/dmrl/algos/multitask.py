"""The baselines a meta-RL paper reports beside MAML (Finn et al. 2017, section 5.3).

- :class:`MultiTask` ("pretrained"): one policy trained on the task mixture with the same outer
  rule (TRPO, or Adam steps) on its own episodes, no inner step in training; at test time it is
  fine-tuned with the same inner steps as MAML (``dmrl-eval adapt_steps=``), so the comparison
  isolates what meta-training the initial parameters adds.
- :class:`Oracle`: the same, with the task's parameters in every observation
  (:class:`dmrl.envs.task_observation.TaskInObservation`): it needs no adaptation, an upper bound.
"""

from __future__ import annotations

import numpy as np
import torch
from hydra.utils import instantiate

from dmrl.algos.maml import MAML
from dmrl.envs.task_observation import TaskInObservation, task_features
from dmrl.errors import ConfigError
from dmrl.learner import AdaptationResult, MetaTestBudget
from dmrl.tasks.distributions import Tasks


class MultiTask(MAML):
    ADAPTS_IN_TRAINING = False  # meta_step: the outer rule on the pre-adaptation episodes alone
    HEADLINE = ("meta_train/return_pre_adapt",)


class Oracle(MultiTask):
    FILMS = False  # the video recorder films the plain env, whose observations lack the task

    def meta_test(self, tasks: Tasks, budget: MetaTestBudget) -> AdaptationResult:
        """The curve over inner steps as any MAML-family learner's; the objective is the return before
        any step (the oracle knows the task: what a meta-learner's adaptation is measured against)."""
        result = super().meta_test(tasks, budget)
        result.objective_name, result.objective = "heldout/return_oracle", lambda r: r[0]
        return result

    def final_budget(self) -> MetaTestBudget:
        return MetaTestBudget(steps=0)

    @classmethod
    def build(cls, cfg, env, device: torch.device, sampler_seed: int):
        if cfg.algo.sampler.name != "local":
            raise ConfigError("algo=oracle runs with algo/sampler=local (remote workers rebuild the env without the task "
                              "in its observations)")
        one = instantiate(cfg.tasks).sample(1, np.random.default_rng(0))  # the task's shape, not a task of the run
        return super().build(cfg, TaskInObservation(env, task_features(one).shape[1]), device, sampler_seed)
