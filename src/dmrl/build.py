"""The one place that turns a Hydra config into objects (habit 1: the config stops at the door)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from dmrl.config import TRAIN_RULES, validate
from dmrl.errors import ConfigError, DmrlError
from dmrl.policies.recurrent import RecurrentPolicy
from dmrl.samplers.batched import BatchedSampler
from dmrl.samplers.trials import TrialSampler
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
        algo_cls, policy_cls = get_class(cfg.algo._target_), get_class(cfg.policy._target_)
        recurrent = issubclass(policy_cls, RecurrentPolicy)
        if recurrent != (algo_cls.__name__ == "RL2"):
            raise ConfigError(f"policy: {policy_cls.__name__} does not fit {algo_cls.__name__}; algo=rl2 needs "
                              "policy=gru, algo=maml an MLP policy (policy=gaussian_mlp or policy=maml_paper)")
        sampler_seed = _derived_seed(seed, 0)
        if recurrent:
            policy = instantiate(cfg.policy, obs_dim=env.obs_dim, act_dim=env.act_dim, num_actions=env.num_actions)
            sampler = TrialSampler(env, policy.to(dev), cfg.algo.trials_per_task, cfg.algo.episodes_per_trial,
                                   seed=sampler_seed)
            parts = {}
        else:
            if env.num_actions is not None:
                raise ConfigError(f"algo: {algo_cls.__name__} needs continuous actions, but {type(env).__name__} "
                                  "has discrete ones: use algo=rl2")
            policy = instantiate(cfg.policy, obs_dim=env.obs_dim, act_dim=env.act_dim,
                                 hidden_sizes=list(cfg.policy.hidden_sizes))
            sampler = BatchedSampler(env, policy.to(dev), cfg.algo.fast_batch_size, seed=sampler_seed)
            parts = {"baseline": instantiate(cfg.algo.baseline)}
        meta_optimizer = instantiate(cfg.meta_optimizer)
        algo_cfg = OmegaConf.masked_copy(cfg.algo, [k for k in cfg.algo if k != "baseline"])
        algo = instantiate(
            algo_cfg,
            policy=policy,
            sampler=sampler,
            meta_optimizer=meta_optimizer,
            tasks=tasks,
            task_rng=task_rng(seed, "train"),
            **parts,
        )
    except InstantiationException as e:  # Hydra wraps what a constructor raised
        if isinstance(e.__cause__, DmrlError):
            raise e.__cause__ from None
        raise ConfigError(f"invalid configuration: {str(e).strip().splitlines()[-1]}") from None
    except TypeError as e:  # an unexpected key reached a constructor
        raise ConfigError(f"invalid configuration: {e}") from None
    return Parts(config=cfg, device=dev, env=env, tasks=tasks, policy=policy, algo=algo)
