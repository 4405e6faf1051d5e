"""PEARL: probabilistic embeddings for actor-critic meta-RL (Rakelly et al. 2019, Algorithms 1-2;
shared/REFERENCES.md, PEARL).

A context encoder maps each transition ``c_n = (s, a, r[, s'])`` of a task to a Gaussian factor
``N(mu_n, sigma_n^2)``; the factors multiply into the posterior ``q(z | c)`` over a latent task
variable ``z``; an off-policy SAC agent acts on ``[s, z]``. Training samples ``z ~ q(z | c)`` with
the reparameterization trick, and the encoder learns from the critics' loss plus
``kl_lambda * KL(q(z | c) || N(0, I))`` only (``z`` is detached for the actor and the value).

Data per iteration (Algorithm 1; counts per sampled task): steps with ``z`` from the prior and,
optionally, from the posterior go to both the task's RL buffer and its encoder buffer (emptied
first, so the context is recent); "extra" posterior steps go to the RL buffer only. A posterior
collection is the reference code's ``collect_data``: it starts from the prior and re-infers the
posterior from a new context batch of the task's encoder buffer after every ``update_post_train``
trajectories (so on a sparse family it explores by posterior sampling and fills the encoder
buffer with the goal once found); ``update_post_train=0`` infers one posterior before the
collection and rolls all its episodes out at once. All sampled tasks, and all episodes of a
round, step together in one batched env. Then ``num_train_steps``
gradient steps on ``meta_batch`` train tasks with ``batch_size`` RL transitions and
``context_batch`` context transitions each.

Meta-test (the reference code's ``collect_paths``): on each held-out task the first
``num_exp_traj_eval`` trajectories explore with ``z`` from the prior (a fresh sample each, so that
they differ as the encoder's training context does), then the posterior of all transitions so far
is inferred, and again after every later trajectory; actions are deterministic. The curve's x-axis
is the trajectory index, the reported figure the return of the first trajectory after exploration.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from dmrl.buffers.replay import TaskReplay
from dmrl.envs.base import BatchedEnv
from dmrl.errors import ConfigError
from dmrl.keys import BOOL, NON_NEGATIVE, POSITIVE, PROBABILITY, CrossCheck, int_at_least, list_of
from dmrl.learner import PART_KEYS, AdaptationResult, DeclaredState, MetaTestBudget
from dmrl.optim import sac
from dmrl.policies.tanh_gaussian import TanhGaussianPolicy, mlp
from dmrl.samplers.batched import SeededSampler, roll_out
from dmrl.samplers.episodes import Episodes
from dmrl.tasks.distributions import Tasks
from dmrl.tasks.pools import TaskPool

MIN_VAR = 1e-7  # the reference's clamp of each factor's variance


# --- the posterior over z --------------------------------------------------------------------------
def product_of_gaussians(mu: Tensor, var: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Product of the factors along the context axis: ``sigma^2 = 1 / sum 1/sigma_n^2``,
    ``mu = sigma^2 sum mu_n / sigma_n^2``; ``mask [..., c]`` (0/1) leaves factors out (the
    steps after an episode ended).  # [..., c, L] -> [..., L] each"""
    precision = 1.0 / var.clamp(min=MIN_VAR)
    if mask is not None:
        precision = precision * mask[..., None]
    post_var = 1.0 / precision.sum(-2)
    return post_var * (mu * precision).sum(-2), post_var


def kl_standard_normal(mu: Tensor, var: Tensor) -> Tensor:
    """``KL(N(mu, diag var) || N(0, I))`` per row.  # [..., L] -> [...]"""
    return 0.5 * (var + mu ** 2 - 1.0 - var.log()).sum(-1)


class ContextEncoder(nn.Module):
    """MLP from one transition to its Gaussian factor ``(mu_n, sigma_n^2 = softplus(.))``."""

    def __init__(self, context_dim: int, latent_dim: int, hidden_sizes: Sequence[int] = (200, 200, 200)) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = mlp(context_dim, list(hidden_sizes), 2 * latent_dim)

    def forward(self, context: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance of each task's context ``[M, c, context_dim]`` (``mask [M, c]``:
        the transitions that count; a task with none keeps the prior's N(0, I)).  # [M, L] each"""
        mu, pre = self.net(context).chunk(2, dim=-1)
        if mask is None:
            return product_of_gaussians(mu, nn.functional.softplus(pre))
        # the prior as one more factor of unit precision where nothing counts would change every
        # posterior; instead a task without transitions gets N(0, I) explicitly
        m, v = product_of_gaussians(mu, nn.functional.softplus(pre), mask)
        empty = (mask.sum(-1) == 0)[:, None]
        return torch.where(empty, torch.zeros_like(m), m), torch.where(empty, torch.ones_like(v), v)


class Critic(nn.Module):
    """``Q(s, a, z)`` or ``V(s, z)``: an MLP of the concatenated inputs to one number."""

    def __init__(self, in_dim: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp(in_dim, list(hidden_sizes), 1)

    def forward(self, *xs: Tensor) -> Tensor:
        return self.net(torch.cat(xs, dim=-1)).squeeze(-1)


# --- batched collection -----------------------------------------------------------------------------
class LatentSampler(SeededSampler):
    """Episodes of the actor with one latent ``z`` per episode, every task and episode stepped together."""

    def __init__(self, env: BatchedEnv, policy: TanhGaussianPolicy, seed: int) -> None:
        self.policy = policy
        super().__init__(env, seed)

    def rebuild_args(self) -> dict:
        return {}

    def sample(self, tasks: Tasks, z: Tensor, deterministic: bool = False) -> Episodes:
        """Episodes ``[T, N, B]`` acting on ``[s, z]``, ``z [N, B, L]`` (B episodes of each of N tasks)."""
        return roll_out(self.env, tasks, z.shape[1],
                        lambda obs: self.policy.act(torch.cat([obs, z], -1), self.generator, deterministic))


def transitions(ep: Episodes, task: int, dense: bool = False) -> dict[str, Tensor]:
    """The real steps of task ``task``'s episodes, flat: ``{field: [m, dim]}`` for a replay buffer
    (``dense``: the shaped reward where the env reports one, else the env's own)."""
    keep = ep.mask[:, task].reshape(-1) > 0
    flat = lambda x: x[:, task].reshape(-1, *x.shape[3:])[keep]  # noqa: E731
    rewards = ep.dense_rewards if dense and ep.dense_rewards is not None else ep.rewards
    return {"obs": flat(ep.obs), "actions": flat(ep.actions), "rewards": flat(rewards),
            "next_obs": flat(ep.next_obs), "terminated": flat(ep.terminated).float()}


class Collected:
    """One collection's figures over its rounds: env steps, and the mean episode return and success
    rate over its tasks and episodes (rounds weighted by their episodes; one round's as it is)."""

    def __init__(self) -> None:
        self.env_steps = 0
        self._returns: list[tuple[Tensor, int]] = []
        self._success: list[tuple[Tensor, int]] = []

    def add(self, ep: Episodes, episodes: int) -> None:
        self.env_steps += ep.env_steps
        self._returns.append((ep.task_returns.mean(), episodes))
        if ep.task_success is not None:
            self._success.append((ep.task_success.mean(), episodes))

    @staticmethod
    def _mean(parts: list[tuple[Tensor, int]]) -> float:
        means = torch.stack([m for m, _ in parts]).tolist()  # one read from the device, not one per round
        if len(parts) == 1:
            return means[0]
        return sum(m * n for m, (_, n) in zip(means, parts)) / sum(n for _, n in parts)

    @property
    def task_return(self) -> float:
        return self._mean(self._returns)

    @property
    def success(self) -> float | None:
        return self._mean(self._success) if self._success else None


# --- the learner --------------------------------------------------------------------------------------
class PEARL(DeclaredState):
    FILMS = False
    EXPLORES = True  # its meta-test explores with z from the prior first (dmrl-eval exploration_trajectories=)
    HEADLINE = ("meta_train/return_pre_adapt", "meta_train/return_post_adapt")  # z from the prior / the posterior
    STEP_SIZE_KEYS = ("algo.meta_optimizer.lr",)
    # Its config keys (dmrl.keys; checked by dmrl.config.validate before anything is built)
    KEYS = {
        **{k: int_at_least(1) for k in ("latent_dim", "net_size", "meta_batch", "batch_size", "context_batch",
                                        "num_train_steps", "num_tasks_sample", "num_exp_traj_eval", "replay_size")},
        **{k: int_at_least(0) for k in ("num_initial_steps", "num_steps_prior", "num_steps_posterior",
                                        "num_extra_rl_steps_posterior", "update_post_train")},
        "encoder_hidden": list_of(int_at_least(1), "a list of integers >= 1 (hidden layer widths)", min_len=1),
        "context_next_obs": BOOL,
        "dense_rl_reward": BOOL,
        "reward_scale": POSITIVE,
        "kl_lambda": NON_NEGATIVE,
        "gamma": PROBABILITY,
        **PART_KEYS,
    }
    CROSS_CHECKS = (
        CrossCheck(("num_steps_prior", "num_steps_posterior", "num_extra_rl_steps_posterior"),
                   lambda num_steps_prior, num_steps_posterior, num_extra_rl_steps_posterior:
                   num_steps_prior > 0 or num_steps_posterior + num_extra_rl_steps_posterior == 0,
                   "{at}num_steps_prior must be > 0 where posterior steps are collected (their posterior needs the "
                   "iteration's prior context), got {num_steps_prior}"),
    )

    def __init__(
        self,
        policy: TanhGaussianPolicy,
        sampler: LatentSampler,
        meta_optimizer: sac.SAC,
        tasks: TaskPool,
        task_rng: np.random.Generator,
        *,
        encoder: ContextEncoder,
        qf1: Critic,
        qf2: Critic,
        vf: Critic,
        latent_dim: int = 5,
        net_size: int = 300,
        encoder_hidden: Sequence[int] = (200, 200, 200),
        context_next_obs: bool = False,
        meta_batch: int = 16,
        batch_size: int = 256,
        context_batch: int = 64,
        num_train_steps: int = 2000,
        num_initial_steps: int = 2000,
        num_tasks_sample: int = 5,
        num_steps_prior: int = 400,
        num_steps_posterior: int = 0,
        num_extra_rl_steps_posterior: int = 400,
        update_post_train: int = 1,
        num_exp_traj_eval: int = 1,
        reward_scale: float = 5.0,
        kl_lambda: float = 0.1,
        gamma: float = 0.99,
        replay_size: int = 1_000_000,
        dense_rl_reward: bool = False,
    ) -> None:
        if getattr(meta_optimizer, "KIND", None) != "sac":
            raise ConfigError("algo=pearl needs algo/meta_optimizer=sac")
        if not isinstance(tasks, TaskPool):
            raise ConfigError("algo=pearl needs a fixed task pool with train/test splits (e.g. env=point_robot, "
                              "env=sparse_point_robot, tasks=cheetah_vel_pool)")
        self.policy, self.sampler, self.meta_optimizer, self.tasks = policy, sampler, meta_optimizer, tasks
        self.task_rng = task_rng
        self.encoder, self.qf1, self.qf2, self.vf = encoder, qf1, qf2, vf
        self.target_vf = copy.deepcopy(vf)
        self.latent_dim, self.context_next_obs = int(latent_dim), bool(context_next_obs)
        self.meta_batch, self.batch_size, self.context_batch = int(meta_batch), int(batch_size), int(context_batch)
        self.num_train_steps, self.num_initial_steps = int(num_train_steps), int(num_initial_steps)
        self.num_tasks_sample = int(num_tasks_sample)
        self.num_steps_prior, self.num_steps_posterior = int(num_steps_prior), int(num_steps_posterior)
        self.num_extra_rl_steps_posterior = int(num_extra_rl_steps_posterior)
        self.update_post_train = int(update_post_train)
        self.num_exp_traj_eval = int(num_exp_traj_eval)
        self.reward_scale, self.kl_lambda, self.gamma = float(reward_scale), float(kl_lambda), float(gamma)
        self.dense_rl_reward = bool(dense_rl_reward)
        env = sampler.env
        self.num_train = tasks.size("train")
        dev = env.device
        self.replay = TaskReplay(self.num_train, replay_size, env.obs_dim, env.act_dim, dev)
        self.enc_replay = TaskReplay(self.num_train, replay_size, env.obs_dim, env.act_dim, dev)
        lr = meta_optimizer.lr
        self.opt_policy = torch.optim.Adam(policy.parameters(), lr=lr)
        self.opt_q1, self.opt_q2 = torch.optim.Adam(qf1.parameters(), lr=lr), torch.optim.Adam(qf2.parameters(), lr=lr)
        self.opt_v = torch.optim.Adam(vf.parameters(), lr=lr)
        self.opt_context = torch.optim.Adam(encoder.parameters(), lr=lr)
        self.generator = torch.Generator(device="cpu").manual_seed(int(task_rng.integers(2**63)))
        self.initialized = torch.zeros((), dtype=torch.bool)  # the initial collection on every train task is done

    # --- the posterior ---------------------------------------------------------------------------
    def context_of(self, batch: dict[str, Tensor]) -> Tensor:
        """Encoder inputs ``[s, a, r(, s')]`` of transitions ``{field: [..., dim]}``.  # [..., context_dim]"""
        parts = [batch["obs"], batch["actions"], batch["rewards"]]
        return torch.cat(parts + [batch["next_obs"]] if self.context_next_obs else parts, dim=-1)

    def sample_z(self, mu: Tensor, var: Tensor, n: int | None = None) -> Tensor:
        """``z ~ N(mu, var)`` (reparameterized; ``n`` samples per row on a new axis 1).  # [M(, n), L]"""
        shape = mu.shape if n is None else (mu.shape[0], n, mu.shape[-1])
        eps = torch.randn(shape, generator=self.generator, dtype=mu.dtype).to(mu.device)
        if n is not None:
            mu, var = mu[:, None], var[:, None]
        return mu + var.sqrt() * eps

    def posterior(self, tasks: np.ndarray) -> tuple[Tensor, Tensor]:
        """``q(z | c)`` of train tasks from ``context_batch`` transitions of their encoder buffers."""
        ctx = self.context_of(self.enc_replay.sample(torch.as_tensor(tasks), self.context_batch, self.generator))
        return self.encoder(ctx)

    # --- collection --------------------------------------------------------------------------------
    def collect(self, idx: np.ndarray, steps: int, posterior: bool, encoder_too: bool) -> Collected:
        """``steps`` env steps on each train task of ``idx`` (whole episodes, all tasks together), ``z``
        per episode from the prior or, for a posterior collection, as ``update_post_train`` says
        (module docstring); into the RL buffer and, with ``encoder_too``, the encoder buffer."""
        H = self.sampler.env.horizon
        episodes = max(1, -(-steps // H))
        per_round = self.update_post_train if posterior and self.update_post_train > 0 else episodes
        tasks, out = self.tasks.at(idx, "train"), Collected()
        for start in range(0, episodes, per_round):
            b = min(per_round, episodes - start)
            with torch.no_grad():
                if posterior and (self.update_post_train == 0 or start > 0):
                    mu, var = self.posterior(idx)
                    z = self.sample_z(mu, var, b)
                else:  # the prior (a posterior collection's first round: the reference's clear_z)
                    z = torch.randn(len(idx), b, self.latent_dim, generator=self.generator)
            ep = self.sampler.sample(tasks, z.to(self.sampler.env.device))
            for j, task in enumerate(idx):
                self.replay.add(int(task), transitions(ep, j, dense=self.dense_rl_reward))
                if encoder_too:  # the context always sees the env's own reward
                    self.enc_replay.add(int(task), transitions(ep, j))
            out.add(ep, b)
        return out

    def collect_iteration(self) -> tuple[dict[str, float], int]:
        metrics, env_steps = {}, 0
        if not bool(self.initialized):
            everyone = np.arange(self.num_train)
            if self.num_initial_steps > 0:
                env_steps += self.collect(everyone, self.num_initial_steps, False, True).env_steps
            self.initialized.fill_(True)
        idx = np.sort(self.task_rng.choice(self.num_train, size=min(self.num_tasks_sample, self.num_train),
                                           replace=False))
        self.enc_replay.clear(idx)
        if self.num_steps_prior > 0:
            got = self.collect(idx, self.num_steps_prior, False, True)
            metrics["meta_train/return_prior"], env_steps = got.task_return, env_steps + got.env_steps
            metrics["meta_train/return_pre_adapt"] = metrics["meta_train/return_prior"]  # the contract's names
            if got.success is not None:  # the env reports success (Meta-World, the sparse point robot)
                metrics["meta_train/success_pre_adapt"] = got.success
        if self.num_steps_posterior > 0:
            got = self.collect(idx, self.num_steps_posterior, True, True)
            metrics["meta_train/return_posterior"], env_steps = got.task_return, env_steps + got.env_steps
        if self.num_extra_rl_steps_posterior > 0:
            got = self.collect(idx, self.num_extra_rl_steps_posterior, True, False)
            metrics["meta_train/return_posterior"], env_steps = got.task_return, env_steps + got.env_steps
        if (self.num_steps_posterior > 0 or self.num_extra_rl_steps_posterior > 0) and got.success is not None:
            metrics["meta_train/success_post_adapt"] = got.success
        if "meta_train/return_posterior" in metrics:
            metrics["meta_train/return_post_adapt"] = metrics["meta_train/return_posterior"]
        return metrics, env_steps

    # --- the update ---------------------------------------------------------------------------------
    def train_step(self) -> dict[str, Tensor]:
        """One gradient step of every network on ``meta_batch`` train tasks (the reference's ``_take_step``)."""
        s = self.meta_optimizer
        idx = torch.randint(self.num_train, (self.meta_batch,), generator=self.generator)
        ctx = self.context_of(self.enc_replay.sample(idx, self.context_batch, self.generator))
        batch = self.replay.sample(idx, self.batch_size, self.generator)  # [M, b, dim]
        mu, var = self.encoder(ctx)  # [M, L]
        z = self.sample_z(mu, var)[:, None].expand(-1, self.batch_size, -1)  # [M, b, L]
        obs, act, next_obs = batch["obs"], batch["actions"], batch["next_obs"]
        rew, term = batch["rewards"].squeeze(-1), batch["terminated"].squeeze(-1)
        zd = z.detach()
        a_new, log_pi, mean, log_std = self.policy.sample(torch.cat([obs, zd], -1), self.generator)

        # critics and encoder: Q loss (through z) plus the KL of the posterior
        q1, q2 = self.qf1(obs, act, z), self.qf2(obs, act, z)
        with torch.no_grad():
            target = sac.q_target(rew, term, self.target_vf(next_obs, zd), self.reward_scale, self.gamma)
        kl = kl_standard_normal(mu, var).sum()
        loss_q = sac.q_loss(q1, q2, target)
        for opt in (self.opt_q1, self.opt_q2, self.opt_context):
            opt.zero_grad(set_to_none=True)
        (loss_q + self.kl_lambda * kl).backward()
        for opt in (self.opt_q1, self.opt_q2, self.opt_context):
            opt.step()

        # value and actor, z detached (the encoder learns from the critics' loss and the KL only)
        min_q = torch.minimum(self.qf1(obs, a_new, zd), self.qf2(obs, a_new, zd))
        loss_v = sac.v_loss(self.vf(obs, zd), min_q, log_pi)
        self.opt_v.zero_grad(set_to_none=True)
        loss_v.backward()
        self.opt_v.step()
        sac.polyak(self.target_vf, self.vf, s.tau)
        loss_pi = sac.actor_loss(log_pi, min_q, mean, log_std, s.mean_reg, s.std_reg)
        self.opt_policy.zero_grad(set_to_none=True)
        loss_pi.backward()
        self.opt_policy.step()  # (the critics' gradients from this loss are cleared before their next step)
        return {"sac/q_loss": loss_q.detach(), "sac/v_loss": loss_v.detach(), "sac/policy_loss": loss_pi.detach(),
                "pearl/kl": kl.detach() / self.meta_batch, "pearl/z_var": var.detach().mean()}

    def meta_step(self) -> dict[str, float]:
        metrics, env_steps = self.collect_iteration()
        totals: dict[str, Tensor] = {}
        for _ in range(self.num_train_steps):
            for k, v in self.train_step().items():
                totals[k] = totals.get(k, 0.0) + v
        # (a non-finite loss stops the run in the training loop's check of every metric, before a checkpoint)
        metrics.update({k: (v / self.num_train_steps).item() for k, v in totals.items()})
        metrics["env_steps"] = env_steps
        return metrics

    # --- meta-test ---------------------------------------------------------------------------------
    def meta_test(self, tasks: Tasks, budget: MetaTestBudget) -> AdaptationResult:
        """Per held-out task: ``num_exp_traj_eval`` (or ``budget.exploration``) trajectories with ``z`` from the prior, each later
        one with ``z`` from the posterior of every transition so far; deterministic actions; all
        tasks together."""
        explore = int(budget.exploration or self.num_exp_traj_eval)
        # Meta-World's protocol: its adaptation, then its evaluation trajectories
        K = int(budget.protocol_episodes or budget.episodes or explore + 1)
        n = len(next(iter(tasks.values())))
        dev = self.sampler.env.device
        returns, success, context, mask = [], [], None, None
        with torch.no_grad():
            for k in range(K):
                if k < explore:  # exploration: z from the prior
                    z = torch.randn(n, 1, self.latent_dim, generator=self.generator)
                else:
                    mu, var = self.encoder(context, mask)
                    z = self.sample_z(mu, var, 1)
                ep = self.sampler.sample(tasks, z.to(dev), deterministic=True)
                returns.append(ep.task_returns.cpu().numpy())
                if ep.task_success is not None:
                    success.append(ep.task_success.cpu().numpy())
                step = self.context_of({"obs": ep.obs, "actions": ep.actions, "rewards": ep.rewards[..., None],
                                        "next_obs": ep.next_obs})[:, :, 0].transpose(0, 1)  # [N, T, context_dim]
                real = ep.mask[:, :, 0].transpose(0, 1)  # [N, T]: steps after an early end do not count
                context = step if context is None else torch.cat([context, step], dim=1)
                mask = real if mask is None else torch.cat([mask, real], dim=1)
                if budget.on_step is not None:
                    budget.on_step(k, K - 1)
        j = min(explore, K - 1)
        return AdaptationResult(axis="trajectory", returns=np.stack(returns),
                                objective_name="heldout/return_after_exploration", objective=lambda r: r[j],
                                success=np.stack(success) if success else None,
                                extras={"num_exp_traj_eval": explore})

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for opt in (self.opt_policy, self.opt_q1, self.opt_q2, self.opt_v, self.opt_context):
            for group in opt.param_groups:  # the config's step size (a resume may lower it: cli/train.py)
                group["lr"] = self.meta_optimizer.lr

    def final_budget(self) -> MetaTestBudget:
        return MetaTestBudget(episodes=self.num_exp_traj_eval + 1)

    # --- construction ------------------------------------------------------------------------------
    @staticmethod
    def memory_estimate(obs_dim: int, act_dim: int, horizon: int, *, replay_size: int = 1_000_000,
                        num_initial_steps: int = 2000, meta_batch: int = 16, batch_size: int = 256,
                        net_size: int = 300, **_: object) -> int:
        """Bytes of the networks' activations of one gradient step and of the buffers' first
        allocation (they grow with the data; ``replay_size`` caps each task's)."""
        per = 2 * obs_dim + act_dim + 2
        buffers = 2 * 4 * per * min(replay_size, max(num_initial_steps, 1024))
        return buffers + 4 * meta_batch * batch_size * net_size * 3 * 8

    @classmethod
    def build(cls, cfg, env, device: torch.device, sampler_seed: int):
        from hydra.utils import get_class, instantiate

        if env.num_actions is not None:
            raise ConfigError(f"algo: PEARL needs continuous actions, but {type(env).__name__} has discrete ones")
        if not issubclass(get_class(cfg.algo.policy._target_), TanhGaussianPolicy):
            raise ConfigError("algo.policy: algo=pearl acts with algo/policy=tanh_gaussian (SAC's squashed Gaussian)")
        a = cfg.algo
        latent, hidden = int(a.latent_dim), [int(a.net_size)] * 3
        policy_args = {"obs_dim": env.obs_dim + latent, "act_dim": env.act_dim}
        policy = instantiate(cfg.algo.policy, **policy_args).to(device)
        ctx_dim = env.obs_dim + env.act_dim + 1 + (env.obs_dim if a.context_next_obs else 0)
        extras = {
            "encoder": ContextEncoder(ctx_dim, latent, list(a.encoder_hidden)).to(device),
            "qf1": Critic(env.obs_dim + env.act_dim + latent, hidden).to(device),
            "qf2": Critic(env.obs_dim + env.act_dim + latent, hidden).to(device),
            "vf": Critic(env.obs_dim + latent, hidden).to(device),
        }
        return policy, LatentSampler(env, policy, seed=sampler_seed), extras, policy_args

    STATE = ("policy", "encoder", "qf1", "qf2", "vf", "target_vf", "opt_policy", "opt_q1", "opt_q2", "opt_v",
             "opt_context", "sampler", "generator", "task_rng", "initialized")
    BUFFERS = ("replay", "enc_replay")  # beside the checkpoint (checkpoint.buffers), not in it

    def refill_buffers(self) -> str:
        self.initialized.fill_(False)  # the next iteration collects the initial steps on every train task again
        return f"the next iteration collects {self.num_initial_steps} initial steps on each train task again"
