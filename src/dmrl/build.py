"""The one place that turns a Hydra config into objects (habit 1: the config stops at the door)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dmrl.config import TRAIN_RULES, validate
from dmrl.errors import ConfigError, DmrlError
from dmrl.samplers.batched import BatchedSampler
from dmrl.tasks.distributions import task_rng


@dataclass
class Parts:
    """Everything a run needs, built from one config."""

    config: DictConfig
    device: torch.device
    env: object
    tasks: object
    policy: torch.nn.Module
    algo: object


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available; use device=cpu or device=auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _derived_seed(seed: int, purpose: int) -> int:
    return int(np.random.SeedSequence(seed, spawn_key=(100 + purpose,)).generate_state(1)[0])


def build(cfg: DictConfig, device: str | None = None) -> Parts:
    """Instantiate env, task distribution, policy, baseline, sampler, meta-optimizer and algorithm."""
    validate(cfg, TRAIN_RULES)
    dev = resolve_device(device or cfg.device)
    seed = int(cfg.seed)
    seed_everything(seed)
    try:
        env = instantiate(cfg.env, device=str(dev))
        tasks = instantiate(cfg.tasks)
        policy = instantiate(cfg.policy, obs_dim=env.obs_dim, act_dim=env.act_dim, hidden_sizes=list(cfg.policy.hidden_sizes))
        policy = policy.to(dev)
        baseline = instantiate(cfg.algo.baseline)
        sampler = BatchedSampler(env, policy, cfg.algo.fast_batch_size, seed=_derived_seed(seed, 0))
        meta_optimizer = instantiate(cfg.meta_optimizer)
        algo_cfg = OmegaConf.masked_copy(cfg.algo, [k for k in cfg.algo if k != "baseline"])
        algo = instantiate(
            algo_cfg,
            policy=policy,
            baseline=baseline,
            sampler=sampler,
            meta_optimizer=meta_optimizer,
            tasks=tasks,
            task_rng=task_rng(seed, "train"),
        )
    except InstantiationException as e:  # Hydra wraps what a constructor raised
        if isinstance(e.__cause__, DmrlError):
            raise e.__cause__ from None
        raise ConfigError(f"invalid configuration: {str(e).strip().splitlines()[-1]}") from None
    except TypeError as e:  # an unexpected key reached a constructor
        raise ConfigError(f"invalid configuration: {e}") from None
    return Parts(config=cfg, device=dev, env=env, tasks=tasks, policy=policy, algo=algo)
