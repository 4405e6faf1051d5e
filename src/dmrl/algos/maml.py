"""Model-agnostic meta-learning with a TRPO outer step (Finn et al. 2017, Algorithm 3).

Per task, ``inner_steps`` vanilla policy-gradient steps of size ``inner_lr`` on freshly sampled
episodes adapt the meta-parameters; the outer step improves the post-adaptation surrogate and
differentiates through the adaptation (second order unless ``first_order``).

Per-task gradients without a loop over tasks: the meta-parameters are expanded along a task axis
(``theta_b[i] = theta``), the inner losses of all tasks are summed, and one ``autograd.grad``
with respect to ``theta_b`` yields every task's own gradient in its slice, since task ``i``'s loss
depends on ``theta_b[i]`` only. The expansion is a view, so the outer gradient still reaches
``theta``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from dmrl.algos.maml_curvature import MAMLProducts, maml_products
from dmrl.baselines.linear import LinearFeatureBaseline
from dmrl.errors import ConfigError
from dmrl.keys import BOOL, COMPONENT, PROBABILITY, CrossCheck, Rule, int_at_least, is_num, one_of
from dmrl.learner import PART_KEYS, AdaptationResult, DeclaredState, MetaTestBudget
from dmrl.optim.trpo import TRPO
from dmrl.policies.gaussian_mlp import GaussianMLPPolicy, Params
from dmrl.policies.recurrent import RecurrentPolicy
from dmrl.optim.ppo import surrogate, surrogate_weights
from dmrl.rl.returns import discounted_returns, gae, masked_mean, normalize_per_task
from dmrl.samplers.batched import BatchedSampler
from dmrl.samplers.episodes import Episodes
from dmrl.tasks.distributions import TaskDistribution, Tasks


# inner-loss estimators: MAML's score-function loss, or ProMP's low-variance curvature (LVC)
INNER_ESTIMATORS = ("vpg", "lvc")
# outer rules MAML's objective fits: TRPO's trust region, or Adam steps on the (clipped) surrogate
OUTER_KINDS = ("trust_region", "gradient")
INNER_LR = Rule(lambda v: (is_num(v) and v > 0) or (isinstance(v, (list, tuple)) and len(v) >= 1
                                                     and all(is_num(x) and x > 0 for x in v)),
                "a number > 0, or a list of numbers > 0 (one per inner step)")


class MAML(DeclaredState):
    FILMS = True  # dmrl-eval video=true films an episode before and after the inner steps
    ADAPTS_IN_TRAINING = True  # False: training steps on the pre-adaptation episodes (the multitask baseline)
    # The metrics shown first (end-of-run line; the progress line reads the pre/post-adapt returns)
    HEADLINE = ("meta_train/return_pre_adapt", "meta_train/return_post_adapt")
    # What a diverged run's advice tells the user to lower (resume accepts them: cli/train.py).
    STEP_SIZE_KEYS = ("algo.inner_lr", "algo.meta_optimizer.max_kl", "algo.meta_optimizer.lr")  # (those its config has)
    # Its config keys (dmrl.keys; checked by dmrl.config.validate before anything is built)
    KEYS = {
        "meta_batch_size": int_at_least(1),
        "fast_batch_size": int_at_least(1),
        "inner_steps": int_at_least(1),
        "inner_lr": INNER_LR,
        "first_order": BOOL,
        "gamma": PROBABILITY,
        "gae_lambda": PROBABILITY,
        "normalize_advantages": BOOL,
        "inner_estimator": one_of(INNER_ESTIMATORS),
        "baseline": COMPONENT,
        **PART_KEYS,
    }
    CROSS_CHECKS = (
        CrossCheck(("inner_lr", "inner_steps"),
                   lambda inner_lr, inner_steps: is_num(inner_lr) or len(inner_lr) == inner_steps,
                   "{at}inner_lr must be a number > 0 or a list of {inner_steps} numbers > 0 (one per inner step), "
                   "got {inner_lr!r}"),
    )

    @staticmethod
    def memory_estimate(obs_dim: int, act_dim: int, horizon: int, hidden_sizes: list[int], *, meta_batch_size: int,
                        fast_batch_size: int, inner_steps: int, **_: object) -> int:
        """Bytes one meta-iteration holds at its peak, roughly: the episodes of every inner step and
        of the validation batch (observations, actions, rewards, masks, advantages) and the policy's
        activations for the products over them (four copies: forward, backward, the curvature's
        double backward). A lower bound rather than a promise; it catches configs off by orders of
        magnitude before any allocation."""
        steps = horizon * meta_batch_size * fast_batch_size * (inner_steps + 1)
        per_step = obs_dim + act_dim + 4 + 4 * (sum(hidden_sizes) + 2 * act_dim)
        return 4 * steps * per_step

    def __init__(
        self,
        policy: GaussianMLPPolicy,
        baseline: LinearFeatureBaseline,
        sampler: BatchedSampler,
        meta_optimizer: TRPO,
        tasks: TaskDistribution,
        task_rng: np.random.Generator,
        *,
        meta_batch_size: int = 20,
        fast_batch_size: int = 20,
        inner_steps: int = 1,
        inner_lr: float | Sequence[float] = 0.1,
        first_order: bool = False,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        normalize_advantages: bool = True,
        inner_estimator: str = "vpg",
    ) -> None:
        if getattr(meta_optimizer, "KIND", None) not in OUTER_KINDS:
            raise ConfigError(f"algo={type(self).__name__.lower()} needs algo/meta_optimizer=trpo, adam or adam_clip "
                              "(algo/meta_optimizer=ppo is RL²'s minibatch update with a value loss)")
        lrs = list(inner_lr) if isinstance(inner_lr, Sequence) else [inner_lr] * int(inner_steps)
        self.policy, self.baseline, self.sampler = policy, baseline, sampler
        self.meta_optimizer, self.tasks, self.task_rng = meta_optimizer, tasks, task_rng
        self.meta_batch_size, self.fast_batch_size = int(meta_batch_size), int(fast_batch_size)
        self.inner_steps = int(inner_steps)
        self.inner_lrs = [float(lr) for lr in lrs]  # the size of each inner step (Meta-SGD: learned instead)
        self.first_order = bool(first_order)
        self.gamma, self.gae_lambda = float(gamma), float(gae_lambda)
        self.normalize_advantages = bool(normalize_advantages)
        self.lvc = inner_estimator == "lvc"

    @property
    def inner_lr(self) -> float:
        """The first inner step's size (all of them, unless ``algo.inner_lr`` is a list)."""
        return self.inner_lrs[0]

    @inner_lr.setter
    def inner_lr(self, lr: float) -> None:  # one size for every inner step
        self.inner_lrs = [float(lr)] * self.inner_steps

    # --- pieces of the algorithm -------------------------------------------------------------
    def advantages(self, ep: Episodes) -> Tensor:
        """GAE on a per-task linear baseline, normalized per task.  # [T, N, B]"""
        returns = discounted_returns(ep.rewards, ep.mask, self.gamma)
        values = self.baseline.fit_predict(ep.obs, returns, ep.mask)
        adv = gae(ep.rewards, values, ep.mask, self.gamma, self.gae_lambda)
        if self.normalize_advantages:
            adv = normalize_per_task(adv, ep.mask)
        return adv.detach()

    def log_probs(self, params: Params, ep: Episodes) -> tuple[Tensor, Tensor, Tensor]:
        """Mean, log-std ``[T, N, B, act]`` and ``log pi(a|s)`` ``[T, N, B]`` under per-task params."""
        mean, log_std = self.policy(ep.obs_task_major, params)
        mean, log_std = mean.transpose(0, 1), log_std.transpose(0, 1)
        return mean, log_std, self.policy.log_prob(mean, log_std, ep.actions)

    def inner_loss(self, params: Params, ep: Episodes, adv: Tensor) -> Tensor:
        """REINFORCE loss with advantages of each task.  # [N]

        ``lvc`` replaces ``log pi`` by ``pi / stop_gradient(pi)`` (Rothfuss et al. 2019, ProMP's
        low-variance curvature): the same value's gradient, but its Hessian also carries the term
        through which the pre-update sampling distribution affects adaptation, so the meta-gradient
        credits exploration, which plain MAML's drops.
        """
        _, _, logp = self.log_probs(params, ep)
        if self.lvc:
            logp = torch.exp(logp - logp.detach())
        return -masked_mean(logp * adv, ep.mask, (0, 2))

    def per_task(self, n: int | None = None) -> dict[str, Tensor]:
        """Meta-parameters expanded to ``[n, *shape]`` views (see the module docstring)."""
        n = self.meta_batch_size if n is None else n
        return {k: v.unsqueeze(0).expand(n, *v.shape) for k, v in self.policy.params().items()}

    def adapt(self, params: Params, ep: Episodes, adv: Tensor, create_graph: bool,
              lr: float | Params | None = None) -> dict[str, Tensor]:
        """One inner policy-gradient step for every task at once (Finn et al. 2017, eq. 1), of size
        ``lr`` (default ``inner_lr``): one number, or one tensor per parameter (Meta-SGD)."""
        lr = self.inner_lr if lr is None else lr
        with torch.enable_grad():
            loss = self.inner_loss(params, ep, adv).sum()
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        if isinstance(lr, dict):
            return {k: p - lr[k] * g for (k, p), g in zip(params.items(), grads)}
        return {k: p - lr * g for (k, p), g in zip(params.items(), grads)}

    def step_size(self, k: int, differentiable: bool = False) -> float | Params:
        """The size of inner step ``k`` (``differentiable``: as the outer objective sees it; Meta-SGD's
        learned sizes carry a graph there, and are plain tensors elsewhere)."""
        return self.inner_lrs[k]

    def meta_parameters(self) -> list[Tensor]:
        """What the outer step updates."""
        return list(self.policy.parameters())

    @staticmethod
    def _detached(params: Params) -> dict[str, Tensor]:
        return {k: v.detach().requires_grad_() for k, v in params.items()}

    # --- the meta-training step --------------------------------------------------------------
    def sample_tasks(self) -> Tasks:
        return self.tasks.sample(self.meta_batch_size, self.task_rng)

    def meta_step(self) -> dict[str, float]:
        tasks = self.sample_tasks()
        train: list[tuple[Episodes, Tensor]] = []
        sampled_with: list[Params] = []  # the (adapted) parameters each inner step's episodes came from
        params = self._detached(self.per_task())
        metrics: dict[str, float] = {}
        steps = self.inner_steps if self.ADAPTS_IN_TRAINING else 0
        for k in range(steps):
            ep = self.sampler.sample(tasks, params)
            adv = self.advantages(ep)
            train.append((ep, adv))
            # a copy: at k = 0 ``params`` shares storage with the meta-parameters the outer step updates
            sampled_with.append({name: v.detach().clone() for name, v in params.items()})
            metrics[f"meta_train/return_step{k}"] = ep.task_returns.mean().item()
            params = self._detached(self.adapt(params, ep, adv, create_graph=False, lr=self.step_size(k)))
        valid = self.sampler.sample(tasks, params)
        valid_adv = self.advantages(valid)
        with torch.no_grad():
            old_mean, old_log_std, old_logp = self.log_probs(params, valid)

        clip = self.meta_optimizer.clip

        def objective(create_graph: bool) -> tuple[Tensor, Tensor]:
            # TRPO's and MAML-VPG's surrogate (clip None), or MAML-PPO's / ProMP's clipped one
            before, fast = self._adapt_chain(train, create_graph and not self.first_order)
            mean, log_std, logp = self.log_probs(fast, valid)
            loss = -masked_mean(surrogate(logp, old_logp, valid_adv, clip), valid.mask, (0, 2)).mean()
            penalty = self.outer_penalty(train, sampled_with, before)
            if penalty is not None:
                loss = loss + penalty
            kl = self.policy.kl(old_mean, old_log_std, mean, log_std)
            return loss, masked_mean(kl, valid.mask, (0, 2)).mean()

        fvp = gradient = None
        if self.meta_optimizer.KIND == "trust_region":
            # The surrogate's value and exact gradient at the current point, by hand where the policy
            # allows: one more Hessian-vector product instead of autograd through the inner step. There
            # the ratio is 1 (NaN, as objective's, where the old log-probabilities are not finite).
            weights = torch.exp(old_logp - old_logp) * valid_adv
            products = self.curvature(train, valid, weights)
            if products is not None:
                loss = -masked_mean(weights, valid.mask, (0, 2)).mean()
                fvp, gradient = products.fvp, lambda: (loss, products.meta_gradient())
        elif self.hand_gradient_ok():
            def gradient() -> tuple[Tensor, Tensor]:
                """The outer loss and its exact gradient at the current meta-parameters, by hand
                (an Adam step re-evaluates it after each update, away from the sampling point)."""
                with torch.no_grad():
                    fast = self._detached(self.per_task())
                    for k, (ep, adv) in enumerate(train):
                        fast = self._detached(self.adapt(fast, ep, adv, create_graph=False, lr=self.step_size(k)))
                    _, _, logp = self.log_probs(fast, valid)
                    weights = surrogate_weights(logp, old_logp, valid_adv, clip)  # d surrogate / d log pi
                    loss = -masked_mean(surrogate(logp, old_logp, valid_adv, clip), valid.mask, (0, 2)).mean()
                products = maml_products(self.policy, train, valid, self.inner_lrs, self.first_order, lvc=self.lvc,
                                         outer_weights=weights, with_fvp=False)
                grad = products.meta_gradient()
                before, _ = self._adapt_chain(train, not self.first_order, through_last=False)
                penalty = self.outer_penalty(train, sampled_with, before)
                if penalty is not None:
                    params = self.meta_parameters()
                    grad = grad + torch.cat([g.reshape(-1) for g in torch.autograd.grad(penalty, params)]).to(grad.dtype)
                    loss = loss + penalty.detach()
                return loss, grad
        opt_stats = self.meta_optimizer.step(self.meta_parameters(), objective, fvp, gradient)
        metrics.update(self.after_outer_step(train))
        post = valid.task_returns.mean().item()
        metrics[f"meta_train/return_step{steps}"] = post
        if valid.success is not None:  # the env reports success (e.g. Meta-World): before and after adaptation
            metrics["meta_train/success_pre_adapt"] = (train[0][0] if train else valid).task_success.mean().item()
            metrics["meta_train/success_post_adapt"] = valid.task_success.mean().item()
        metrics["meta_train/return_pre_adapt"] = metrics["meta_train/return_step0"]
        metrics["meta_train/return_post_adapt"] = post
        metrics["env_steps"] = sum(ep.env_steps for ep, _ in train) + valid.env_steps
        metrics.update({f"meta_optim/{k}": float(v) for k, v in opt_stats.items()})
        metrics["policy/std"] = self.policy.log_std.exp().mean().item()
        return metrics

    def hand_gradient_ok(self) -> bool:
        """Whether the exact meta-gradient can come from the hand-written products (a supported
        policy, fixed step sizes) instead of autograd through the inner steps."""
        return maml_products(self.policy, [], None, [], self.first_order, with_fvp=False, check_only=True) is not None

    def _adapt_chain(self, train: list[tuple[Episodes, Tensor]], create_graph: bool,
                     through_last: bool = True) -> tuple[list[Params], Params]:
        """The current meta-parameters adapted by the inner steps of ``train`` (with the graph to them):
        the parameters before each step (0 .. steps - 1 times adapted) and after the last
        (``through_last=False``: the last step is not taken, and the second value is the last of the first)."""
        fast, before = self.per_task(), []
        for k, (ep, adv) in enumerate(train):
            before.append(fast)
            if through_last or k + 1 < len(train):
                fast = self.adapt(fast, ep, adv, create_graph=create_graph, lr=self.step_size(k, differentiable=True))
        return before, fast

    def outer_penalty(self, train: list[tuple[Episodes, Tensor]], sampled_with: list[Params],
                      before: list[Params]) -> Tensor | None:
        """A term the outer loss adds, given each inner step's episodes, the parameters that sampled
        them and the current parameters at that step (ProMP: its KL penalty); none here."""
        return None

    def after_outer_step(self, train: list[tuple[Episodes, Tensor]]) -> dict[str, float]:
        """Metrics of the learner's own bookkeeping after the outer step (ProMP: its KL coefficients)."""
        return {}

    def curvature(self, train: list[tuple[Episodes, Tensor]], valid: Episodes,
                  outer_weights: Tensor | None = None) -> MAMLProducts | None:
        """The outer step's products at the current meta-parameters: Hessian of the mean
        post-adaptation KL times a vector and (given ``outer_weights``, the surrogate's ``ratio * A``)
        the meta-gradient, from cached activations (:mod:`dmrl.algos.maml_curvature`).

        ``None`` for a policy those products do not cover: the meta-optimizer then differentiates
        the objective by autograd (exact, generic, slower).
        """
        fraction = self.meta_optimizer.fvp_subsample
        episodes = None if fraction >= 1 else max(1, math.ceil(fraction * valid.mask.shape[2]))
        products = maml_products(self.policy, train, valid, self.inner_lrs, self.first_order, episodes=episodes,
                                 lvc=self.lvc, outer_weights=outer_weights)
        if products is None and episodes is not None:
            raise ConfigError(f"algo.meta_optimizer.fvp_subsample < 1 needs algo/policy=gaussian_mlp or maml_paper "
                              f"with a supported activation, got {type(self.policy).__name__}")
        return products

    # --- meta-test ---------------------------------------------------------------------------
    def step_sizes(self, steps: int, later_lr_scale: float = 1.0, lr_scale: float = 1.0) -> list:
        """Inner step sizes of ``steps`` test-time steps: training's (``inner_lr``; with one per
        step, the last repeats beyond them), the steps after the first times ``later_lr_scale``
        (the MAML paper evaluates with 0.1, then 0.05)."""
        return [self.inner_lrs[min(k, self.inner_steps - 1)] * (1.0 if k == 0 else later_lr_scale) * lr_scale
                for k in range(steps)]

    def adaptation_curve(self, tasks: Tasks, steps: int, episodes: int | None = None,
                         later_lr_scale: float = 1.0, on_step: Callable[[int, int], None] | None = None,
                         success: list | None = None, lr_scale: float = 1.0, last_episodes: int | None = None) -> np.ndarray:
        """Mean episode return of each task after 0..``steps`` inner steps of the sizes
        :meth:`step_sizes` gives; ``on_step(k, steps)`` after each; where the env reports success,
        each point's success rate per task is appended to ``success``. ``last_episodes``: the last
        point's episodes per task, when it differs (Meta-World's evaluation episodes).  # [steps + 1, N]"""
        n = len(next(iter(tasks.values())))
        p = self._detached(self.per_task(n))
        lrs = self.step_sizes(steps, later_lr_scale, lr_scale)
        curve = []
        for k in range(steps + 1):
            ep = self.sampler.sample(tasks, p, last_episodes if k == steps and last_episodes else episodes)
            curve.append(ep.task_returns.cpu().numpy())
            if success is not None and ep.task_success is not None:
                success.append(ep.task_success.cpu().numpy())
            if on_step is not None:
                on_step(k, steps)
            if k < steps:
                p = self._detached(self.adapt(p, ep, self.advantages(ep), create_graph=False, lr=lrs[k]))
        return np.stack(curve)

    def meta_test(self, tasks: Tasks, budget: MetaTestBudget) -> AdaptationResult:
        """The adaptation curve over 0..``budget.steps`` inner steps (the contract's meta-test)."""
        steps = self.inner_steps if budget.steps is None else int(budget.steps)
        success: list[np.ndarray] = []
        curve = self.adaptation_curve(tasks, steps, budget.adapt_episodes or budget.episodes, budget.later_lr_scale,
                                      on_step=budget.on_step, success=success, lr_scale=budget.lr_scale,
                                      last_episodes=budget.eval_episodes)
        return AdaptationResult(axis="inner_step", returns=curve, objective_name="heldout/return_post_adapt",
                                objective=lambda r: r[-1], success=np.stack(success) if success else None,
                                extras={"step_sizes": self.step_sizes(steps, budget.later_lr_scale, budget.lr_scale)})

    def final_budget(self) -> MetaTestBudget:
        """End of training: as many inner steps as training takes, of the training size."""
        return MetaTestBudget(steps=self.inner_steps)

    @classmethod
    def build(cls, cfg, env, device: torch.device, sampler_seed: int) -> tuple[torch.nn.Module, BatchedSampler, dict, dict]:
        """Policy, sampler and baseline from the config: (policy, sampler, constructor extras, policy args)."""
        from hydra.utils import get_class, instantiate

        if issubclass(get_class(cfg.algo.policy._target_), RecurrentPolicy):
            raise ConfigError(f"algo.policy: {get_class(cfg.algo.policy._target_).__name__} does not fit {cls.__name__}; "
                              "algo=rl2 needs algo/policy=gru, algo=maml an MLP policy (algo/policy=gaussian_mlp or "
                              "maml_paper)")
        if env.num_actions is not None:
            raise ConfigError(f"algo: {cls.__name__} needs continuous actions, but {type(env).__name__} "
                              "has discrete ones: use algo=rl2")
        policy_args = {"obs_dim": env.obs_dim, "act_dim": env.act_dim, "hidden_sizes": list(cfg.algo.policy.hidden_sizes)}
        if not policy_args["hidden_sizes"]:
            print("dmrl: note: algo.policy.hidden_sizes=[] is a linear policy (observation -> action mean, no hidden "
                  "layer)", file=sys.stderr)
        policy = instantiate(cfg.algo.policy, **policy_args).to(device)
        sampler = BatchedSampler(env, policy, cfg.algo.fast_batch_size, seed=sampler_seed)
        return policy, sampler, {"baseline": instantiate(cfg.algo.baseline)}, policy_args

    # --- state -------------------------------------------------------------------------------
    # What a checkpoint holds (dmrl.learner.DeclaredState makes state_dict / load_state_dict of it)
    STATE = ("policy", "baseline", "meta_optimizer", "sampler", "task_rng")
