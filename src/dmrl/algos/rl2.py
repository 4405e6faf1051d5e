"""RL² (Duan et al. 2016): meta-learn the learning procedure itself as a recurrent policy.

A GRU reads (observation, previous action, previous reward, done flag) and keeps its hidden state
across the ``episodes_per_trial`` episodes of a trial on one task, so it can explore in the first
episodes and exploit what it learned in the later ones; the state is reset between trials. The
outer objective is the discounted return of the whole trial, optimized by PPO (the common
replacement for the paper's TRPO) with GAE computed across episode boundaries inside a trial.

Adaptation happens in the hidden state, not in the weights: the "adaptation curve" of RL² is the
return of each successive episode of a trial.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from dmrl.errors import ConfigError
from dmrl.keys import BOOL, POSITIVE, PROBABILITY, int_at_least, optional
from dmrl.learner import PART_KEYS, AdaptationResult, DeclaredState, MetaTestBudget
from dmrl.optim.ppo import PPO
from dmrl.policies.recurrent import RecurrentPolicy
from dmrl.rl.returns import gae, masked_mean
from dmrl.samplers.trials import Trials, TrialSampler
from dmrl.tasks.distributions import TaskDistribution, Tasks


class RL2(DeclaredState):
    FILMS = False  # its adaptation is within a trial: dmrl-eval writes numbers, no video
    # The metrics shown first (end-of-run line; the progress line reads the pre/post-adapt returns)
    HEADLINE = ("meta_train/return_pre_adapt", "meta_train/return_post_adapt", "meta_train/trial_return")
    # What a diverged run's advice tells the user to lower (resume accepts them: cli/train.py).
    STEP_SIZE_KEYS = ("algo.meta_optimizer.lr",)
    # Its config keys (dmrl.keys; checked by dmrl.config.validate before anything is built)
    KEYS = {
        "meta_batch_size": int_at_least(1),
        "trials_per_task": int_at_least(1),
        "episodes_per_trial": int_at_least(1),
        "gamma": PROBABILITY,
        "gae_lambda": PROBABILITY,
        "normalize_advantages": BOOL,
        "reward_scale": POSITIVE,
        "tbptt": optional(int_at_least(1), "whole trials"),
        **PART_KEYS,
    }

    @staticmethod
    def memory_estimate(obs_dim: int, act_dim: int, horizon: int, hidden_size: int, *, meta_batch_size: int,
                        trials_per_task: int, episodes_per_trial: int, **_: object) -> int:
        """Bytes one meta-iteration holds at its peak, roughly: the trials' inputs, actions,
        log-probs, values, rewards and masks, and the GRU's activations for backpropagation through
        whole trials (gates and states, about 8 hidden-size vectors a step). A lower bound that
        catches configs off by orders of magnitude before any allocation."""
        steps = horizon * episodes_per_trial * meta_batch_size * trials_per_task
        per_step = 2 * obs_dim + act_dim + 8 + 8 * hidden_size
        return 4 * steps * per_step

    def __init__(
        self,
        policy: RecurrentPolicy,
        sampler: TrialSampler,
        meta_optimizer: PPO,
        tasks: TaskDistribution,
        task_rng: np.random.Generator,
        *,
        meta_batch_size: int = 20,
        trials_per_task: int = 10,
        episodes_per_trial: int = 2,
        gamma: float = 0.99,
        gae_lambda: float = 0.3,
        normalize_advantages: bool = True,
        reward_scale: float = 1.0,
        tbptt: int | None = None,
    ) -> None:
        if getattr(meta_optimizer, "KIND", None) != "minibatch":
            raise ConfigError("algo=rl2 needs algo/meta_optimizer=ppo")
        self.policy, self.sampler, self.meta_optimizer = policy, sampler, meta_optimizer
        self.tasks, self.task_rng = tasks, task_rng
        self.meta_batch_size, self.trials_per_task = int(meta_batch_size), int(trials_per_task)
        self.episodes_per_trial = int(episodes_per_trial)
        self.gamma, self.gae_lambda = float(gamma), float(gae_lambda)
        self.normalize_advantages = bool(normalize_advantages)
        self.reward_scale = float(reward_scale)
        self.tbptt = None if tbptt is None else int(tbptt)
        self.minibatch_generator = torch.Generator(device=sampler.generator.device)
        self.minibatch_generator.manual_seed(int(sampler.generator.initial_seed()) + 7)
        meta_optimizer.attach(policy.parameters())

    def advantages(self, batch: Trials) -> tuple[Tensor, Tensor]:
        """GAE over each whole trial and the value targets (lambda-returns).  # [T, M] each

        The trial, not the episode, is the unit of the return: the value after an episode's last
        step is the value of the next episode's first state, and only the trial's end is terminal.
        The value head learns returns of rewards times ``reward_scale``, which keeps the value loss
        from drowning the policy's gradient in the shared GRU when trial returns are large.
        """
        rewards, values, mask = batch.flat("rewards") * self.reward_scale, batch.flat("values"), batch.flat("mask")
        adv = gae(rewards, values, mask, self.gamma, self.gae_lambda)
        returns = (adv + values) * mask
        if self.normalize_advantages:
            mean = masked_mean(adv, mask, (0, 1))
            std = masked_mean((adv - mean).pow(2), mask, (0, 1)).sqrt()
            adv = (adv - mean) / (std + 1e-8) * mask
        return adv, returns

    def meta_step(self) -> dict[str, float]:
        tasks = self.tasks.sample(self.meta_batch_size, self.task_rng)
        batch = self.sampler.sample(tasks)
        adv, returns = self.advantages(batch)
        inputs, actions = batch.flat("inputs"), batch.flat("actions")

        def evaluate(cols: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            head, values = self.policy(inputs[:, cols], self.tbptt)
            return self.policy.log_prob(head, actions[:, cols]), self.policy.entropy(head), values

        stats = self.meta_optimizer.update(evaluate, batch.flat("log_probs"), adv, returns, batch.flat("mask"),
                                           self.minibatch_generator)
        per_episode = batch.episode_returns.mean((1, 2))  # [E]
        metrics = {f"meta_train/return_episode{k}": float(r) for k, r in enumerate(per_episode)}
        metrics["meta_train/return_pre_adapt"] = float(per_episode[0])
        metrics["meta_train/return_post_adapt"] = float(per_episode[-1])
        metrics["meta_train/trial_return"] = float(per_episode.sum())
        if batch.episode_success is not None:  # the env reports success (Meta-World): per episode of a trial
            success = batch.episode_success.float().mean((1, 2))  # [E]
            metrics.update({f"meta_train/success_episode{k}": float(s) for k, s in enumerate(success)})
            metrics["meta_train/success_pre_adapt"] = float(success[0])
            metrics["meta_train/success_post_adapt"] = float(success[-1])
        metrics["env_steps"] = batch.env_steps
        metrics.update({f"meta_optim/{k}": v for k, v in stats.items()})
        return metrics

    # --- meta-test ---------------------------------------------------------------------------
    def trial_curve(self, tasks: Tasks, trials: int | None = None,
                    episodes_per_trial: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Mean return of each episode of a trial on each task, and its success rate where the env
        reports success.  # [episodes_per_trial, N] each"""
        batch = self.sampler.sample(tasks, trials or 1, episodes_per_trial)
        success = None if batch.episode_success is None else batch.episode_success.float().mean(-1).cpu().numpy()
        return batch.episode_returns.mean(-1).cpu().numpy(), success

    def meta_test(self, tasks: Tasks, budget: MetaTestBudget) -> AdaptationResult:
        """The return of each episode of ``budget.episodes`` trials per task (the contract's meta-test)."""
        # Meta-World's protocol: one trial of its adaptation and evaluation episodes
        curve, success = self.trial_curve(tasks, budget.episodes, budget.protocol_episodes)  # [E, N]
        return AdaptationResult(axis="episode", returns=curve, success=success, objective_name="heldout/trial_return",
                                objective=lambda r: r.sum(0), extras={"trials_per_task": int(budget.episodes or 1)})

    def final_budget(self) -> MetaTestBudget:
        """End of training: one trial per held-out task."""
        return MetaTestBudget()

    @classmethod
    def build(cls, cfg, env, device: torch.device, sampler_seed: int) -> tuple[torch.nn.Module, TrialSampler, dict, dict]:
        """Recurrent policy and trial sampler from the config: (policy, sampler, constructor extras, policy args)."""
        from hydra.utils import get_class, instantiate

        if not issubclass(get_class(cfg.algo.policy._target_), RecurrentPolicy):
            raise ConfigError(f"algo.policy: {get_class(cfg.algo.policy._target_).__name__} does not fit {cls.__name__}; "
                              "algo=rl2 needs algo/policy=gru, algo=maml an MLP policy (algo/policy=gaussian_mlp or "
                              "maml_paper)")
        policy_args = {"obs_dim": env.obs_dim, "act_dim": env.act_dim, "num_actions": env.num_actions}
        policy = instantiate(cfg.algo.policy, **policy_args).to(device)
        sampler = TrialSampler(env, policy, cfg.algo.trials_per_task, cfg.algo.episodes_per_trial, seed=sampler_seed)
        return policy, sampler, {}, policy_args

    # --- state -------------------------------------------------------------------------------
    # What a checkpoint holds (dmrl.learner.DeclaredState makes state_dict / load_state_dict of it)
    STATE = ("policy", "meta_optimizer", "sampler", "minibatch_generator", "task_rng")
