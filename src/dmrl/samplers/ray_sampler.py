"""Spread one run's rollouts over Ray actors (``algo/sampler=ray``).

Each actor holds its own copy of the env and the policy on CPU, rebuilt from their configs. A call
splits the tasks into contiguous chunks, one per actor, sends the current weights once (``ray.put``)
and each chunk's per-task parameters, and concatenates the chunks' batches back along the task
axis. The actors run the very same local sampler (:class:`BatchedSampler` or :class:`TrialSampler`),
so the batch has the same distribution as ``algo/sampler=local``; it is not bit-identical, because each
actor draws its own action noise.

Randomness: the driver's generator is the only state. Every call draws one seed per worker from it,
and each actor reseeds its sampler (action noise and env) with that seed, so a run is reproducible
given ``seed`` and ``algo.sampler.workers``, and checkpoints (which hold the driver's generator and env)
resume it exactly.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np
import ray
import torch
from hydra.utils import instantiate

from dmrl.samplers.batched import SeededSampler
from dmrl.tasks.distributions import Tasks


def _sampler_args(sampler: SeededSampler) -> dict[str, int]:
    """What rebuilds ``sampler`` around another env and policy (each sampler declares it)."""
    if not hasattr(type(sampler), "rebuild_args"):
        raise TypeError(f"algo/sampler=ray cannot wrap a {type(sampler).__name__}: it declares no rebuild_args()")
    return sampler.rebuild_args()


class _Worker:
    """One rollout actor: an env and a policy copy on CPU, limited to ``threads`` threads."""

    def __init__(self, env_config: dict, policy_config: dict, sampler_cls: type, sampler_args: dict,
                 threads: int) -> None:
        torch.set_num_threads(threads)
        env = instantiate(env_config, device="cpu")
        self.policy = instantiate(policy_config)
        self.sampler = sampler_cls(env, self.policy, **sampler_args, seed=0)

    def sample(self, weights: dict, seed: int, tasks: Tasks, *args: Any) -> Any:
        self.policy.load_state_dict(weights)
        self.sampler.seed(seed)
        return self.sampler.sample(tasks, *args)


def _cat_tasks(batches: list) -> Any:
    """Concatenate batches (dataclasses of ``[T, N, ...]`` tensors) on the task axis, padding time with zeros."""
    out = {}
    for f in fields(batches[0]):
        xs = [getattr(b, f.name) for b in batches]
        if any(x is None for x in xs):  # a field the env does not report (success)
            out[f.name] = None
            continue
        T = max(x.shape[0] for x in xs)
        xs = [torch.cat([x, x.new_zeros(T - x.shape[0], *x.shape[1:])]) if x.shape[0] < T else x for x in xs]
        out[f.name] = torch.cat(xs, dim=1)
    return type(batches[0])(**out)


class RaySampler:
    """A local sampler whose ``sample`` runs on ``workers`` Ray actors.

    Everything but ``sample`` is the wrapped local sampler's (``env`` is a property so that
    assigning it reaches the local sampler too). When ``env`` has been replaced on the driver
    (evaluation's video recorder stands in for it), sampling falls back to the local sampler,
    which the replacement wraps; the numbers keep their distribution.
    """

    def __init__(self, local: SeededSampler, env_config: dict, policy_config: dict, workers: int,
                 cpus_per_worker: float = 1) -> None:
        self.local = local
        self.workers = int(workers)
        self._built_env = local.env
        threads = max(1, int(cpus_per_worker))
        actor = ray.remote(num_cpus=cpus_per_worker)(_Worker)
        self.actors = [actor.remote(env_config, policy_config, type(local), _sampler_args(local), threads)
                       for _ in range(self.workers)]

    @property
    def env(self):
        return self.local.env

    @env.setter
    def env(self, env) -> None:
        self.local.env = env

    def __getattr__(self, name: str) -> Any:  # policy, generator, seed, state_dict, trials_per_task, ...
        if name == "local":
            raise AttributeError(name)
        return getattr(self.local, name)

    def sample(self, tasks: Tasks, params: dict[str, torch.Tensor] | None = None, *args: Any) -> Any:
        """The local sampler's ``sample(tasks, ...)``, its task axis split over the actors.

        For a :class:`BatchedSampler` the first extra argument is ``params`` (shared ``[*]`` or
        per-task ``[N, *]``, split with the tasks); for a :class:`TrialSampler` it is ``trials``.
        """
        if self.local.env is not self._built_env:
            return self.local.sample(tasks, params, *args)
        n = len(next(iter(tasks.values())))
        gen = self.generator
        seeds = torch.randint(0, 2**62, (self.workers,), generator=gen, device=gen.device).tolist()
        weights = ray.put({k: v.detach().cpu() for k, v in self.policy.state_dict().items()})
        own = {k: p.dim() for k, p in self.policy.named_parameters()}
        refs = []
        for w, idx in enumerate(np.array_split(np.arange(n), self.workers)):
            if len(idx) == 0:
                continue
            lo, hi = int(idx[0]), int(idx[-1]) + 1
            chunk = {k: v[lo:hi] for k, v in tasks.items()}
            if isinstance(params, dict):  # per-task tensors have one axis more than the policy's own
                part = {k: (v[lo:hi] if v.dim() > own.get(k, v.dim()) else v).detach().cpu()
                        for k, v in params.items()}
            else:
                part = params
            refs.append(self.actors[w].sample.remote(weights, seeds[w], chunk, part, *args))
        batch = _cat_tasks(ray.get(refs))
        dev = gen.device
        return type(batch)(**{f.name: None if getattr(batch, f.name) is None else getattr(batch, f.name).to(dev)
                              for f in fields(batch)})
