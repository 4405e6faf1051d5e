"""Checks of the composed configuration, run before any work starts.

Hydra rejects unknown keys and groups; :func:`validate` rejects wrong types and impossible values,
each with one line that names the key and what is allowed. Each component declares its own keys
next to its code (``KEYS``, :mod:`dmrl.keys`); what no component owns is declared here: the
top-level keys of ``dmrl-train`` (:data:`TRAIN_RULES`: seed, iterations, checkpoint.*, logger.*,
algo.sampler.*, ...) and of ``dmrl-eval`` (:data:`EVAL_RULES`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dmrl.errors import ConfigError
from dmrl.keys import (BOOL, POSITIVE, SEED, Rule, check_cross, check_keys, check_unknown, declared_keys, int_at_least,
                       is_int, one_of)

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


DEVICE = Rule(
    lambda v: isinstance(v, str) and (v in ("cpu", "cuda", "auto") or (v.startswith("cuda:") and v[5:].isdigit())),
    "one of cpu, cuda, cuda:N, auto",
)
MATMUL_CHOICES = ("blas", "onednn")  # which library computes float32 CPU products (dmrl.matmul)
OPTIONAL_PATH = Rule(lambda v: v is None or (isinstance(v, str) and v != ""), "null or a checkpoint path")

# The options of dmrl-eval's policy group (conf/policy/) that it scores without a checkpoint
# (env=ENV policy=NAME), with their _target_ (compared as text: a rule never imports what a config
# names). They have nothing to learn: dmrl-train's policy is the algo's (conf/algo/policy/).
EVAL_POLICIES = {"random": "dmrl.classic.UniformPolicy"}

# dmrl-train's own keys; each component's (algo.*, env.*, algo.meta_optimizer.*, ...) are its class's KEYS
TRAIN_RULES: dict[str, Rule] = {
    "seed": SEED,
    "iterations": int_at_least(1),
    "overwrite": BOOL,
    "device": DEVICE,
    "matmul": one_of(MATMUL_CHOICES),
    "resume": OPTIONAL_PATH,
    "checkpoint.every": int_at_least(1),
    "checkpoint.keep": int_at_least(1),
    "checkpoint.buffers": BOOL,
    "logger.tensorboard": BOOL,
    "logger.progress": BOOL,
    "final_eval.num_tasks": int_at_least(0),
    "final_eval.seed": SEED,
    # the algo's sampler names no class: dmrl.build reads it (and wraps the learner's sampler for ray)
    "algo.sampler.name": one_of(("local", "ray")),
    "algo.sampler.workers": int_at_least(1),
    "algo.sampler.address": Rule(lambda v: v is None or (isinstance(v, str) and v != ""),
                                 "null (a local Ray instance) or a cluster's address (auto, HOST:PORT)"),
    "algo.sampler.cpus_per_worker": POSITIVE,
}

MAX_ADAPT_STEPS = 100  # MAML's papers test 1-3 steps; 100 already takes minutes on a large task set

EVAL_RULES: dict[str, Rule] = {
    "checkpoint": Rule(lambda v: v is None or (isinstance(v, str) and v != ""),
                       "null or a checkpoint path (checkpoint=PATH)"),
    "policy": Rule(lambda v: v is None or (isinstance(v, dict) and v.get("_target_") in EVAL_POLICIES.values()),
                   f"null or policy={'|'.join(EVAL_POLICIES)} (scored without a checkpoint on env=ENV)"),
    "num_tasks": int_at_least(1),
    "adapt_steps": Rule(lambda v: is_int(v) and 0 <= v <= MAX_ADAPT_STEPS,
                        f"an integer in [0, {MAX_ADAPT_STEPS}] (each step samples a fresh batch on every task)"),
    "later_lr_scale": POSITIVE,
    "lr_scale": POSITIVE,
    "seed": SEED,
    "episodes": Rule(lambda v: v is None or (is_int(v) and v >= 1), "null or an integer >= 1"),
    "exploration_trajectories": Rule(lambda v: v is None or (is_int(v) and v >= 1), "null or an integer >= 1"),
    "device": DEVICE,
    "video": BOOL,
    "video_tasks": int_at_least(1),
    "protocol": one_of(("dmrl", "metaworld")),
    "num_evals": int_at_least(1),
    "adaptation_steps": Rule(lambda v: is_int(v) and 0 <= v <= MAX_ADAPT_STEPS, f"an integer in [0, {MAX_ADAPT_STEPS}]"),
    "adaptation_episodes": int_at_least(1),
    "evaluation_episodes": int_at_least(1),
    # policy=random: the env and tasks composed from their groups are checked by their classes' KEYS
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


def validate(cfg: DictConfig, rules: dict[str, Rule], *, source: str = "config", unknown_ok: bool = False) -> None:
    """Raise :class:`ConfigError` for the first key whose value breaks its rule: the command's own
    keys (``rules``), then every component's (each ``_target_``'s class declares its ``KEYS``).

    The ``_target_``s are checked first (:func:`dmrl.stored.check_targets`, ``source`` names the
    config in its message): only then is a class that a config names imported, never instantiated.
    ``unknown_ok``: keys that no component would read pass (a resume's command line, whose step
    sizes of another learner's optimizer are added to today's default groups: dmrl.cli.train).
    """
    from dmrl.stored import check_targets  # (dmrl.stored reads this module)

    check_targets(cfg, source)
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
    nodes = [(path, component_class(node, path), _values(node, path)) for path, node in components(cfg)]
    # Values first, in every node: a value interpolated from another key (tasks.arms: ${env.arms})
    # after the key it comes from, so that the error names the key that was written; then keys that
    # nothing would read; then what several keys of a node must satisfy together.
    for interpolated in (False, True):
        for path, cls, (values, copied) in nodes:
            check_keys(cls, {k: v for k, v in values.items() if (k in copied) == interpolated}, path)
    for path, cls, (values, _) in nodes:
        if not unknown_ok:
            check_unknown(cls, values, path)
    for path, cls, (values, _) in nodes:
        check_cross(cls, values, path)


def _values(node: DictConfig, path: str) -> tuple[dict[str, Any], set[str]]:
    """A component node's present values, as plain data, and which of them are interpolations."""
    values, copied = {}, set()
    for key in node:
        if OmegaConf.is_missing(node, key):
            continue
        try:
            value = node[key]
            values[key] = OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) \
                else value
        except OmegaConfBaseException as e:  # an interpolation that does not resolve
            raise ConfigError(f"{path}.{key}: {str(e).strip().splitlines()[0]}") from None
        if OmegaConf.is_interpolation(node, key):
            copied.add(key)
    return values, copied


def component_class(node: DictConfig, path: str) -> type:
    """The class a node's ``_target_`` names (imported, never instantiated)."""
    try:
        return get_class(node._target_)
    except Exception as e:  # not importable here (a missing extra), or not a class
        raise ConfigError(f"{path}._target_: cannot use {node._target_}: {str(e).strip().splitlines()[0]}") from None


def components(cfg: DictConfig) -> Iterator[tuple[str, DictConfig]]:
    """(path, node) of every node of ``cfg`` that names a class by ``_target_``, outer ones first."""
    def walk(node: Any, path: str) -> Iterator[tuple[str, DictConfig]]:
        if isinstance(node, dict):
            if "_target_" in node:
                yield path, OmegaConf.select(cfg, path)
            for key, value in node.items():
                yield from walk(value, f"{path}.{key}" if path else str(key))

    yield from walk(OmegaConf.to_container(cfg, resolve=False), "")


def rule_of(cfg: DictConfig, key: str, rules: dict[str, Rule]) -> Rule | None:
    """The rule that :func:`validate` checks ``key`` of ``cfg`` with (``None``: nothing declares it)."""
    if key in rules:
        return rules[key]
    for path, node in components(cfg):
        if key.startswith(f"{path}.") and "." not in key[len(path) + 1:]:
            return (declared_keys(component_class(node, path)) or {}).get(key[len(path) + 1:])
    return None
