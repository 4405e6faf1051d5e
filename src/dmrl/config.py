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

TRAIN_RULES: dict[str, Rule] = {
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
    "algo.inner_lr": POSITIVE,
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
    "meta_optimizer.clip": float_in(0.0, 1.0, lo_open=True, hi_open=True),
    "meta_optimizer.value_coef": NON_NEGATIVE,
    "meta_optimizer.entropy_coef": NON_NEGATIVE,
    "meta_optimizer.max_grad_norm": POSITIVE,
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
    "checkpoint": Rule(lambda v: isinstance(v, str) and v != "", "a checkpoint path (checkpoint=PATH)", required=True),
    "num_tasks": int_at_least(1),
    "adapt_steps": Rule(lambda v: _is_int(v) and 0 <= v <= MAX_ADAPT_STEPS,
                        f"an integer in [0, {MAX_ADAPT_STEPS}] (each step samples a fresh batch on every task)"),
    "later_lr_scale": POSITIVE,
    "seed": SEED,
    "episodes": Rule(lambda v: v is None or (_is_int(v) and v >= 1), "null or an integer >= 1"),
    "device": DEVICE,
    "video": BOOL,
    "video_tasks": int_at_least(1),
}

_MISSING = object()


def _select(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
    if value is not _MISSING and OmegaConf.is_missing(cfg, key):
        return _MISSING
    return value


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
