"""Configs read back from disk (a checkpoint's, a sweep job's) are data, never code.

A checkpoint's tensors load with ``weights_only=True``, but its config is handed to Hydra's
``instantiate``, which imports and calls whatever ``_target_`` names: ``torch.load`` with
``weights_only: false`` runs a pickle, ``io.open`` with mode ``w`` truncates a file. So a config
may only name, at each place, a ``_target_`` that one of dmrl's own config files puts at that
place (``env._target_`` one of the env group's classes, and so on); it may not hold
interpolations (a stored config is resolved) or Hydra's positional ``_args_``; and it must pass
the same checks as a command line. Anything else is refused in one line before anything is built.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml  # omegaconf's own dependency: the conf files are read as plain data
from omegaconf import DictConfig, ListConfig, OmegaConf

from dmrl.config import CONF_DIR, TRAIN_RULES, extra_conf_dirs, validate
from dmrl.errors import ConfigError
from dmrl.learner import PARTS

# Hydra's instantiate keys that only shape a call (never name code); ``_args_`` passes positional values.
CALL_KEYS = ("_partial_", "_convert_", "_recursive_")
PACKAGE_GLOBAL = "# @package _global_"


def _targets_in(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(path of the node that holds ``_target_``, its value) for every ``_target_`` under ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_":
                yield path, value
            else:
                yield from _targets_in(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _targets_in(value, f"{path}.{i}" if path else str(i))


@functools.cache
def allowed_targets() -> dict[str, frozenset[str]]:
    """Where dmrl's config groups (and those of ``$DMRL_CONFIG_PATH``) put a ``_target_`` (a node's
    path) and which ones they put there."""
    found: dict[str, set[str]] = {}
    for root in (CONF_DIR, *extra_conf_dirs()):
        for file in sorted(root.rglob("*.yaml")):
            _collect(file, file.parent.relative_to(root).as_posix(), found)
    return {path: frozenset(targets) for path, targets in found.items()}


def _collect(file: Path, group: str, found: dict[str, set[str]]) -> None:
    """Add the ``_target_``s of one config file (of config group ``group``) to ``found``."""
    if group == "." or group.split("/")[0] in ("hydra", "launcher", "hparams_search"):
        return  # train.yaml's own _target_ is Hydra's callback; launchers/sweepers are Hydra's keys
    text = file.read_text()
    data = yaml.safe_load(text) or {}
    prefix = "" if PACKAGE_GLOBAL in text else group.replace("/", ".")
    for path, target in _targets_in(data, prefix):
        if path.startswith("hydra.") or path == "hydra":
            continue
        found.setdefault(path, set()).add(str(target))


def _walk(node: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    """(path, key, value) of every entry of a plain container tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            yield here, key, value
            yield from _walk(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            here = f"{path}.{i}" if path else str(i)
            yield here, i, value
            yield from _walk(value, here)


def _plain(cfg: DictConfig | dict) -> Any:
    return OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, (DictConfig, ListConfig)) else cfg


def check_resolved(cfg: DictConfig | dict, source: str) -> None:
    """Refuse interpolations in a config that was stored resolved (a checkpoint's): one is an
    alteration (``${oc.env:...}`` and other resolvers would read the machine at load time)."""
    for path, _, value in _walk(_plain(cfg), ""):
        if isinstance(value, str) and "${" in value:
            raise ConfigError(f"{source}: {path} holds an interpolation ({value[:60]!r}); a stored config is "
                              "resolved, so this one was altered; refused")


def check_targets(cfg: DictConfig | dict, source: str) -> None:
    """Refuse a config that names code dmrl's own config files do not put at that place (a stored
    config's after :func:`check_resolved` and its migrations: the places are today's)."""
    allowed = allowed_targets()
    for path, key, value in _walk(_plain(cfg), ""):
        if not isinstance(key, str) or not key.startswith("_"):
            continue
        node = path.rpartition(".")[0]
        if key == "_target_":
            ok = allowed.get(node, frozenset())
            if value not in ok:
                where = f"one of {', '.join(sorted(ok))}" if ok else "none (dmrl builds nothing there)"
                raise ConfigError(f"{source}: {path} is {value!r}, which dmrl's config groups do not define "
                                  f"there (allowed: {where}); refused, nothing was built")
        elif key not in CALL_KEYS:
            raise ConfigError(f"{source}: {path} is a Hydra instantiation key dmrl never writes; refused, "
                              "nothing was built")


def _move_parts_under_algo(cfg: DictConfig) -> None:
    """The top-level policy, meta_optimizer and sampler nodes of an older config, moved under ``algo``."""
    for key in PARTS:
        if key not in cfg:
            continue
        if key in cfg.algo:
            raise ConfigError(f"it holds both {key} and algo.{key}: {key} is algo.{key} since the policy, optimizer "
                              "and sampler are part of the algo's config, and a config has one of them")
        OmegaConf.update(cfg, f"algo.{key}", cfg[key], force_add=True, merge=False)
        del cfg[key]


# What configs written by older dmrl versions lack or keep elsewhere, and what they meant:
# (what, applies, fill in). Every migration of a stored config lives here, in order, instead of in
# the classes' defaults; each sees the config as the migrations before it left it.
MIGRATIONS = (
    ("env.normalize_actions (added with normalized point_nav actions): older point_nav runs acted in raw units",
     lambda c: str(OmegaConf.select(c, "env._target_", default="")).endswith("PointNav")
     and OmegaConf.select(c, "env.normalize_actions", default=None) is None,
     lambda c: OmegaConf.update(c, "env.normalize_actions", False, force_add=True)),
    ("sampler (added with sampler=ray): older runs sampled locally",
     lambda c: OmegaConf.select(c, "sampler", default=None) is None
     and OmegaConf.select(c, "algo.sampler", default=None) is None,
     lambda c: OmegaConf.update(c, "sampler", {"name": "local"}, force_add=True)),
    ("algo.policy, algo.meta_optimizer, algo.sampler (the algo's own since checkpoint format 3): older configs "
     "held them at the top level",
     lambda c: isinstance(c.get("algo"), DictConfig) and any(key in c for key in PARTS),
     _move_parts_under_algo),
    ("matmul (added with matmul=onednn): older runs' float32 products were torch's BLAS",
     lambda c: c.get("matmul") is None,
     lambda c: OmegaConf.update(c, "matmul", "blas", force_add=True)),
)


def migrate(cfg: DictConfig) -> list[str]:
    """Bring a stored config up to today's keys (:data:`MIGRATIONS`); returns what was filled in.
    A config that no migration can bring up (it holds a key in its old and its new place) is a
    :class:`ConfigError`."""
    done = []
    for what, applies, fill in MIGRATIONS:
        if applies(cfg):
            fill(cfg)
            done.append(what)
    return done


def stored_config(text: Any, source: str) -> DictConfig:
    """The config a checkpoint (or a sweep job's files) stored, checked like a command line.

    ``source`` names where it came from in the one-line error (e.g. ``checkpoint run/last.pt``).
    """
    if not isinstance(text, str):
        raise ConfigError(f"{source}: its config is not YAML text (got {type(text).__name__})")
    try:
        cfg = OmegaConf.create(text)  # omegaconf's YAML loader (floats like 1e-3), interpolations left unresolved
    except Exception as e:  # yaml's scanner/parser errors, omegaconf's own
        first = str(e).strip().splitlines()[0]
        raise ConfigError(f"{source}: its config is not valid YAML ({first})") from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{source}: its config is not a mapping of keys (got a list)")
    check_resolved(cfg, source)  # before a migration reads a value (an interpolation would read the machine)
    try:
        migrate(cfg)  # data only: nodes moved or filled in, nothing imported; the _target_s are checked at their new places
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    check_targets(cfg, source)
    try:
        validate(cfg, TRAIN_RULES)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return cfg

