"""A learner that exists only in the tests: the contract (dmrl.learner) is all it implements, and
it reaches dmrl-train, dmrl-eval, final_eval, summary.json and dmrl-report through
``DMRL_CONFIG_PATH=tests/plugins/conf`` without any edit of dmrl.

Multi-task REINFORCE: one Gaussian MLP policy trained on the task mixture by a vanilla policy
gradient with Adam; at meta-test it adapts by nothing, so its curve has one point (0 inner steps).
"""

from __future__ import annotations

import torch

from dmrl.learner import AdaptationResult, DeclaredState, MetaTestBudget
from dmrl.rl.returns import discounted_returns, masked_mean
from dmrl.samplers.batched import BatchedSampler


class Stub(DeclaredState):
    STATE = ("policy", "adam", "sampler", "task_rng")
    HEADLINE = ("meta_train/return",)
    STEP_SIZE_KEYS = ("algo.lr",)
    FILMS = False

    def __init__(self, policy, sampler, meta_optimizer, tasks, task_rng, *, meta_batch_size: int = 4,
                 episodes: int = 4, lr: float = 1e-2, gamma: float = 0.99) -> None:
        self.policy, self.sampler, self.tasks, self.task_rng = policy, sampler, tasks, task_rng
        self.meta_batch_size, self.gamma = int(meta_batch_size), float(gamma)
        self.adam = torch.optim.Adam(policy.parameters(), lr=lr)

    @staticmethod
    def memory_estimate(obs_dim, act_dim, horizon, *, meta_batch_size, episodes, **_) -> int:
        return 4 * horizon * meta_batch_size * episodes * (obs_dim + act_dim + 2)

    @classmethod
    def build(cls, cfg, env, device, sampler_seed):
        from hydra.utils import instantiate

        args = {"obs_dim": env.obs_dim, "act_dim": env.act_dim, "hidden_sizes": list(cfg.algo.policy.hidden_sizes)}
        policy = instantiate(cfg.algo.policy, **args).to(device)
        return policy, BatchedSampler(env, policy, cfg.algo.episodes, seed=sampler_seed), {}, args

    def meta_step(self) -> dict:
        ep = self.sampler.sample(self.tasks.sample(self.meta_batch_size, self.task_rng))
        mean, log_std = self.policy(ep.obs)
        returns = discounted_returns(ep.rewards, ep.mask, self.gamma)
        loss = -masked_mean(self.policy.log_prob(mean, log_std, ep.actions) * returns, ep.mask, (0, 1, 2))
        self.adam.zero_grad()
        loss.backward()
        self.adam.step()
        return {"meta_train/return": float(ep.task_returns.mean()), "env_steps": int(ep.mask.sum())}

    def meta_test(self, tasks, budget: MetaTestBudget) -> AdaptationResult:
        curve = self.sampler.sample(tasks, None, budget.episodes).task_returns.cpu().numpy()[None]  # [1, N]
        return AdaptationResult(axis="inner_step", returns=curve, objective_name="heldout/return",
                                objective=lambda r: r[-1], extras={"step_sizes": []})

    def final_budget(self) -> MetaTestBudget:
        return MetaTestBudget(steps=0)
