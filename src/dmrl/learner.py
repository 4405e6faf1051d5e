"""The meta-learner contract: what the training loop, ``dmrl-eval``, ``final_eval``,
``summary.json``, the logger and the report read from a learner, and nothing else.

A learner (``algos/*.py``) is a class with

- ``meta_step() -> dict``: one meta-iteration; its metrics (``section/quantity``) and
  ``env_steps``, the environment steps it took;
- ``meta_test(tasks, budget) -> AdaptationResult``: adapt to held-out ``tasks`` within
  ``budget`` and report the return along the learner's own x-axis;
- ``final_budget() -> MetaTestBudget``: the budget of the end-of-run evaluation;
- ``build(cfg, env, device, seed) -> (policy, sampler, extra)``: its policy, its sampler and any
  further constructor arguments, built from the config (the one place a learner sees a config;
  its policy from ``cfg.algo.policy``, one of :data:`PARTS`);
- ``STATE``: the attribute names a checkpoint holds, declared once (:class:`DeclaredState`
  turns them into ``state_dict`` / ``load_state_dict``);
- ``HEADLINE``: the metrics shown first (progress line, end-of-run line);
- ``STEP_SIZE_KEYS``: the config keys a diverged run's advice tells the user to lower;
- ``KEYS``: the rules of its config keys (``algo.*``; :mod:`dmrl.keys`; :data:`PART_KEYS` among them),
  checked before any work (as are those of every class a config names: env, tasks, policy,
  meta-optimizer, baseline);
- ``FILMS``: whether ``dmrl-eval video=true`` can film its adaptation;
- ``memory_estimate(obs_dim, act_dim, horizon, **policy_and_algo_keys)``: bytes one
  meta-iteration holds, checked before anything is allocated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from dmrl.keys import COMPONENT, Rule
from dmrl.tasks.distributions import Tasks

# What each algo's config brings in its own defaults list (conf/algo/<name>.yaml: algo/policy=,
# algo/meta_optimizer=, algo/sampler=): the policy and the meta-optimizer (components that declare
# their own keys) and where its rollouts run (algo/sampler names no class: dmrl.build reads it,
# dmrl.config.TRAIN_RULES declares its keys). dmrl.build hands the learner what they build, never
# the nodes. Stored configs from before they were the algo's had them at the top level (dmrl.stored).
PARTS = ("policy", "meta_optimizer", "sampler")
PART_KEYS = {
    "policy": COMPONENT,
    "meta_optimizer": COMPONENT,
    "sampler": Rule(lambda v: isinstance(v, Mapping) and "name" in v, "a sampler node (algo/sampler=local|ray)"),
}

AXES = {
    "inner_step": "inner gradient steps",
    "episode": "episode of the trial",
    "trajectory": "trajectories collected on the task (exploration, then the posterior's)",
}


@dataclass
class MetaTestBudget:
    """How much adaptation a meta-test allows."""

    steps: int | None = None  # gradient-based learners: inner steps (the curve has steps + 1 points)
    episodes: int | None = None  # episodes per task per step (MAML) or trials per task (RL²); None: the learner's own
    later_lr_scale: float = 1.0  # gradient-based learners: steps after the first are this times the training step
    lr_scale: float = 1.0  # gradient-based learners: every test-time step times this (tuning a fine-tuned baseline)
    exploration: int | None = None  # PEARL: trajectories with z from the prior before the posterior; None: its own
    # Meta-World's protocol (dmrl-eval protocol=metaworld): adaptation episodes per task, then evaluation
    # episodes that are scored. MAML family: the adaptation points sample adapt_episodes, the last point
    # eval_episodes; RL²: trials of adapt + eval episodes; PEARL: adapt + eval trajectories.
    adapt_episodes: int | None = None
    eval_episodes: int | None = None
    on_step: Callable[[int, int], None] | None = None  # progress: called after each point of the curve

    @property
    def protocol_episodes(self) -> int | None:
        """Meta-World's protocol: adaptation plus evaluation episodes per task (None outside it)."""
        return self.adapt_episodes + self.eval_episodes if self.adapt_episodes and self.eval_episodes else None


@dataclass
class AdaptationResult:
    """A meta-test's outcome on ``tasks`` held-out tasks."""

    axis: str  # a key of AXES: what the first axis of ``returns`` counts
    returns: np.ndarray  # [K, tasks]: mean episode return at each point of the axis
    objective_name: str  # e.g. heldout/return_post_adapt: the job's objective (a sweep's, a report's)
    objective: Callable[[np.ndarray], np.ndarray]  # [K, tasks] -> [tasks]: each task's objective value
    success: np.ndarray | None = None  # [K, tasks] where the env reports success
    extras: dict[str, Any] = field(default_factory=dict)  # the learner's own additions to eval.json


def mean_ci95(curve: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over tasks and the half-width of its normal 95% interval.  # curve [K, tasks]"""
    n = curve.shape[1]
    mean = curve.mean(axis=1)
    sem = curve.std(axis=1, ddof=1) / math.sqrt(n) if n > 1 else np.zeros_like(mean)
    return mean, 1.96 * sem


class MetaLearner(Protocol):
    STATE: tuple[str, ...]
    HEADLINE: tuple[str, ...]
    STEP_SIZE_KEYS: tuple[str, ...]
    FILMS: bool

    def meta_step(self) -> dict[str, float]: ...

    def meta_test(self, tasks: Tasks, budget: MetaTestBudget) -> AdaptationResult: ...

    def final_budget(self) -> MetaTestBudget: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def _state_of(x: Any) -> Any:
    if isinstance(x, np.random.Generator):
        return x.bit_generator.state
    if isinstance(x, torch.Generator):
        return x.get_state()
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    return x.state_dict()


def _load_into(x: Any, state: Any) -> None:
    if isinstance(x, np.random.Generator):
        x.bit_generator.state = state
    elif isinstance(x, torch.Generator):
        x.set_state(state)
    elif isinstance(x, torch.Tensor):
        if not isinstance(state, torch.Tensor) or state.shape != x.shape:
            raise ValueError(f"expected a tensor of shape {tuple(x.shape)}, got {getattr(state, 'shape', type(state))}")
        with torch.no_grad():
            x.copy_(state)
    else:
        x.load_state_dict(state)


class DeclaredState:
    BUFFERS: tuple[str, ...] = ()  # large state (replay buffers) written beside the checkpoint, not in it

    """``state_dict`` / ``load_state_dict`` from the attribute names in ``STATE``: modules,
    optimizers, samplers (anything with a ``state_dict``), random generators (numpy, torch) and
    plain tensors (a learner's own numbers, e.g. ProMP's adaptive KL coefficients)."""

    STATE: tuple[str, ...] = ()

    def state_dict(self) -> dict:
        return {name: _state_of(getattr(self, name)) for name in self.STATE}

    def load_state_dict(self, state: dict) -> None:
        missing = [name for name in self.STATE if name not in state]
        if missing:
            raise KeyError(f"the learner's state lacks {', '.join(missing)}")
        for name in self.STATE:
            _load_into(getattr(self, name), state[name])

    def buffers_state(self) -> dict:
        return {name: _state_of(getattr(self, name)) for name in self.BUFFERS}

    def load_buffers(self, state: dict) -> None:
        for name in self.BUFFERS:
            _load_into(getattr(self, name), state[name])

    def refill_buffers(self) -> str:
        """Prepare to refill the buffers a checkpoint came without; says how, in a few words."""
        return "they start empty"
