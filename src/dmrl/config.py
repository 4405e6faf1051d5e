"""Checks of the composed configuration, run before any work starts.

Hydra rejects unknown keys and groups; these checks reject wrong types and impossible values of
the public keys, each with a message that names the key and what is allowed.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from dmrl.algos.maml import INNER_ESTIMATORS
from dmrl.envs.point_nav import REWARDS
from dmrl.errors import ConfigError
from dmrl.policies.gaussian_mlp import ACTIVATIONS
from dmrl.policies.recurrent import CRITICS

CONF_DIR = Path(__file__).resolve().parent / "conf"
# More config dirs (a learner, env or preset of one's own: new files, no edit of dmrl), searched
# after dmrl's own; the _target_s their files name are allowed like dmrl's (dmrl.stored).
CONFIG_PATH_ENV = "DMRL_CONFIG_PATH"


def extra_conf_dirs() -> list[Path]:
    """The dirs of ``$DMRL_CONFIG_PATH`` (``os.pathsep``-separated), each laid out like ``conf/``."""
    return [Path(p).expanduser().resolve() for p in os.environ.get(CONFIG_PATH_ENV, "").split(os.pathsep) if p]


def searchpath_overrides() -> list[str]:
    """``hydra.searchpath=[...]`` that makes Hydra compose from the extra config dirs too."""
    dirs = extra_conf_dirs()
    return [f"hydra.searchpath=[{','.join('file://' + str(d) for d in dirs)}]"] if dirs else []

# ``${dmrl_run_id:}`` in the default run dirs: one short random id per process, so two runs started
# in the same second get two dirs (``${now:...}`` alone gave them one)
RUN_ID = secrets.token_hex(3)
OmegaConf.register_new_resolver("dmrl_run_id", lambda: RUN_ID, replace=True)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True)
class Rule:
    check: Callable[[Any], bool]
    allowed: str
    required: bool = False


def int_at_least(lo: int) -> Rule:
    return Rule(lambda v: _is_int(v) and v >= lo, f"an integer >= {lo}")


def one_of(values: Iterable[str]) -> Rule:
    allowed = tuple(values)
    return Rule(lambda v: v in allowed, f"one of {', '.join(allowed)}")


def float_in(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Rule:
    def ok(v: Any) -> bool:
        return _is_num(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)

    return Rule(ok, f"a number in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}")


# numpy's legacy seeding (np.random.seed) takes 32 bits; the named streams derive from the same number
SEED = Rule(lambda v: _is_int(v) and 0 <= v < 2**32, f"an integer in [0, {2**32 - 1}]")
POSITIVE = Rule(lambda v: _is_num(v) and v > 0, "a number > 0")
NON_NEGATIVE = Rule(lambda v: _is_num(v) and v >= 0, "a number >= 0")
BOOL = Rule(lambda v: isinstance(v, bool), "true or false")
DEVICE = Rule(
    lambda v: isinstance(v, str) and (v in ("cpu", "cuda", "auto") or (v.startswith("cuda:") and v[5:].isdigit())),
    "one of cpu, cuda, cuda:N, auto",
)
OPTIONAL_PATH = Rule(lambda v: v is None or (isinstance(v, str) and v != ""), "null or a checkpoint path")
HIDDEN = Rule(
    lambda v: isinstance(v, (list, tuple, ListConfig)) and all(_is_int(x) and x >= 1 for x in v),
    "a list of integers >= 1, e.g. [64,64]",
)
ACTIVATION = one_of(sorted(ACTIVATIONS))

# The options of the policy group (conf/policy/) that dmrl-eval scores without a checkpoint
# (env=ENV policy=NAME), with their _target_ (compared as text: a rule never imports what a config
# names). They have nothing to learn, so dmrl-train refuses them.
EVAL_POLICIES = {"random": "dmrl.classic.UniformPolicy"}

TRAIN_RULES: dict[str, Rule] = {
    "policy._target_": Rule(lambda v: v not in EVAL_POLICIES.values(),
                            f"a network to train, not policy={'|'.join(EVAL_POLICIES)} (nothing to train: "
                            f"dmrl-eval env=ENV policy={'|'.join(EVAL_POLICIES)} scores it)"),
    "seed": SEED,
    "iterations": int_at_least(1),
    "overwrite": BOOL,
    "device": DEVICE,
    "resume": OPTIONAL_PATH,
    "checkpoint.every": int_at_least(1),
    "checkpoint.keep": int_at_least(1),
    "env.horizon": int_at_least(1),
    "env.max_action": POSITIVE,
    "env.normalize_actions": BOOL,
    "env.goal_radius": NON_NEGATIVE,
    "env.reward": one_of(REWARDS),
    "policy.hidden_sizes": HIDDEN,
    "policy.activation": ACTIVATION,
    "policy.init_std": POSITIVE,
    "algo.meta_batch_size": int_at_least(1),
    "algo.fast_batch_size": int_at_least(1),
    "algo.inner_steps": int_at_least(1),
    "algo.inner_lr": Rule(lambda v: (_is_num(v) and v > 0) or (isinstance(v, (list, tuple)) and len(v) >= 1 and all(
        _is_num(x) and x > 0 for x in v)), "a number > 0, or a list of numbers > 0 (one per inner step)"),
    "algo.kl_coef": NON_NEGATIVE,
    "algo.adaptive_kl": BOOL,
    "algo.kl_target": POSITIVE,
    "meta_optimizer.steps": int_at_least(1),
    "algo.first_order": BOOL,
    "algo.gamma": float_in(0.0, 1.0),
    "algo.gae_lambda": float_in(0.0, 1.0),
    "algo.normalize_advantages": BOOL,
    "algo.inner_estimator": one_of(INNER_ESTIMATORS),
    "algo.baseline.reg_coeff": POSITIVE,
    "meta_optimizer.max_kl": POSITIVE,
    "meta_optimizer.cg_iters": int_at_least(1),
    "meta_optimizer.cg_damping": NON_NEGATIVE,
    "meta_optimizer.ls_max_steps": int_at_least(1),
    "meta_optimizer.ls_backtrack_ratio": float_in(0.0, 1.0, lo_open=True, hi_open=True),
    "meta_optimizer.fvp_subsample": float_in(0.0, 1.0, lo_open=True),
    "algo.trials_per_task": int_at_least(1),
    "algo.episodes_per_trial": int_at_least(1),
    "algo.reward_scale": POSITIVE,
    "algo.tbptt": Rule(lambda v: v is None or (_is_int(v) and v >= 1), "null or an integer >= 1"),
    "policy.hidden_size": int_at_least(1),
    "policy.critic": one_of(CRITICS),
    "policy.update_gate_bias": Rule(_is_num, "a number"),
    "policy.prev_obs": BOOL,
    "meta_optimizer.lr": POSITIVE,
    "meta_optimizer.epochs": int_at_least(1),
    "meta_optimizer.minibatches": int_at_least(1),
    "meta_optimizer.clip": Rule(lambda v: v is None or (_is_num(v) and 0 < v < 1), "null (adam: no clipping) or a "
                                "number in (0, 1)"),
    "meta_optimizer.value_coef": NON_NEGATIVE,
    "meta_optimizer.entropy_coef": NON_NEGATIVE,
    "meta_optimizer.max_grad_norm": Rule(lambda v: v is None or (_is_num(v) and v > 0), "null (adam: no clipping) "
                                         "or a number > 0"),
    "meta_optimizer.anneal_lr": BOOL,
    "meta_optimizer.anneal_entropy": BOOL,
    "meta_optimizer.anneal_iterations": int_at_least(1),
    "meta_optimizer.adam_eps": POSITIVE,
    "env.arms": int_at_least(2),
    "env.states": int_at_least(1),
    "env.actions": int_at_least(2),
    "env.reward_std": NON_NEGATIVE,
    "logger.tensorboard": BOOL,
    "logger.progress": BOOL,
    "final_eval.num_tasks": int_at_least(0),
    "final_eval.seed": SEED,
    "sampler.workers": int_at_least(1),
    "sampler.cpus_per_worker": POSITIVE,
}

MAX_ADAPT_STEPS = 100  # MAML's papers test 1-3 steps; 100 already takes minutes on a large task set

EVAL_RULES: dict[str, Rule] = {
    "checkpoint": Rule(lambda v: v is None or (isinstance(v, str) and v != ""),
                       "null or a checkpoint path (checkpoint=PATH)"),
    "policy": Rule(lambda v: v is None or (isinstance(v, dict) and v.get("_target_") in EVAL_POLICIES.values()),
                   f"null or policy={'|'.join(EVAL_POLICIES)} (scored without a checkpoint on env=ENV)"),
    "num_tasks": int_at_least(1),
    "adapt_steps": Rule(lambda v: _is_int(v) and 0 <= v <= MAX_ADAPT_STEPS,
                        f"an integer in [0, {MAX_ADAPT_STEPS}] (each step samples a fresh batch on every task)"),
    "later_lr_scale": POSITIVE,
    "seed": SEED,
    "episodes": Rule(lambda v: v is None or (_is_int(v) and v >= 1), "null or an integer >= 1"),
    "device": DEVICE,
    "video": BOOL,
    "video_tasks": int_at_least(1),
    # policy=random: the env composed from its group is checked as dmrl-train checks it
    **{key: rule for key, rule in TRAIN_RULES.items() if key.startswith("env.")},
}

_MISSING = object()


def _select(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
    if value is not _MISSING and OmegaConf.is_missing(cfg, key):
        return _MISSING
    return value


def group_options(group: str) -> list[str]:
    """The options of a config group, in dmrl's conf/ and the dirs of ``$DMRL_CONFIG_PATH``."""
    return sorted({p.stem for root in (CONF_DIR, *extra_conf_dirs()) for p in (root / group).glob("*.yaml")})


def eval_source(cfg: DictConfig) -> str:
    """What ``dmrl-eval`` scores: ``"checkpoint"`` (checkpoint=PATH: the learner, env and tasks its
    stored config names) or the name of a policy scored without one (env=ENV policy=random);
    exactly one of them. Anything else is a :class:`ConfigError` that names the keys."""
    checkpoint, policy, env = (_select(cfg, k) for k in ("checkpoint", "policy", "env"))
    has_checkpoint = checkpoint not in (None, _MISSING)
    has_env = env not in (None, _MISSING)
    target = OmegaConf.select(cfg, "policy._target_", default=None) if isinstance(policy, DictConfig) else None
    name = next((n for n, t in EVAL_POLICIES.items() if t == target), None)
    envs = ", ".join(group_options("env"))
    policies = "|".join(EVAL_POLICIES)
    if has_checkpoint and policy not in (None, _MISSING):
        raise ConfigError(f"checkpoint and policy={name or target} exclude each other: checkpoint=PATH meta-tests "
                          f"a stored learner on its own env, policy={policies} scores a policy on env=ENV without one; "
                          "give one of them")
    if has_checkpoint and has_env:
        raise ConfigError(f"env: a checkpoint brings its own env and task distribution (its stored config); "
                          f"env=ENV goes with policy={policies}")
    if has_checkpoint:
        return "checkpoint"
    if policy in (None, _MISSING):
        raise ConfigError(f"checkpoint is required: checkpoint=PATH meta-tests a dmrl checkpoint, or give "
                          f"policy={policies} with env=ENV (one of {envs}) to score a policy without one")
    if name is None:
        raise ConfigError(f"policy: {target} is a network to train; dmrl-eval scores it from its checkpoint "
                          f"(checkpoint=PATH), and without one only policy={policies}")
    if not has_env:
        raise ConfigError(f"env is required with policy={name}: env=one of {envs}")
    return name


def validate(cfg: DictConfig, rules: dict[str, Rule]) -> None:
    """Raise :class:`ConfigError` for the first key whose value breaks its rule."""
    for key, rule in rules.items():
        value = _select(cfg, key)
        if value is _MISSING:
            if rule.required:
                raise ConfigError(f"{key} is required: {rule.allowed}")
            continue
        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True)
        if not rule.check(value):
            raise ConfigError(f"{key} must be {rule.allowed}, got {value!r}")
    low, high = _select(cfg, "tasks.low"), _select(cfg, "tasks.high")
    if _is_num(low) and _is_num(high) and low > high:
        raise ConfigError(f"tasks.low must be <= tasks.high, got low={low} high={high}")
    for key in ("tasks.low", "tasks.high"):
        value = _select(cfg, key)
        if value is not _MISSING and value is not None and not _is_num(value) and not isinstance(value, ListConfig):
            raise ConfigError(f"{key} must be a number, got {value!r}")
