"""The one place that turns a Hydra config into objects (habit 1: the config stops at the door)."""

from __future__ import annotations

import math
import random
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from dmrl.config import TRAIN_RULES, validate
from dmrl.errors import ConfigError, DmrlError
from dmrl.learner import PARTS
from dmrl.matmul import use as use_matmul
from dmrl.stored import check_targets
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


def _ray_sampler(cfg: DictConfig, local, policy_args: dict):
    """Wrap ``local`` so that its rollouts run on ``algo.sampler.workers`` Ray actors."""
    try:
        import ray

        from dmrl.samplers.ray_sampler import RaySampler
    except ImportError:
        raise ConfigError("algo/sampler=ray needs Ray: pip install -e '.[sweep]'") from None
    s = cfg.algo.sampler
    if not ray.is_initialized():
        local_cpus = None if s.address else math.ceil(s.workers * s.cpus_per_worker)
        ray.init(address=s.address, num_cpus=local_cpus, include_dashboard=False, log_to_driver=False)
    env_config = {k: v for k, v in OmegaConf.to_container(cfg.env, resolve=True).items() if k != "device"}
    policy_config = {**OmegaConf.to_container(cfg.algo.policy, resolve=True), **policy_args}
    return RaySampler(local, env_config, policy_config, s.workers, s.cpus_per_worker)


def available_bytes(dev: torch.device) -> int | None:
    """Memory a run can still take on ``dev`` (None where the platform does not say)."""
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"


def check_memory(algo_cls: type, cfg: DictConfig, env, dev: torch.device) -> None:
    """Refuse, before anything is allocated, a config whose meta-iteration cannot fit in memory."""
    estimate = algo_cls.memory_estimate  # part of the learner contract (dmrl.learner)
    plain = lambda node: {k: v for k, v in OmegaConf.to_container(node, resolve=True).items()  # noqa: E731
                          if not k.startswith("_") and k not in PARTS}
    need = estimate(env.obs_dim, env.act_dim, int(env.horizon), **plain(cfg.algo.policy), **plain(cfg.algo))
    have = available_bytes(dev)
    if have is not None and need > have:
        sizes = ", ".join(f"{k}={OmegaConf.select(cfg, k)}" for k in (
            "env.horizon", "algo.meta_batch_size", "algo.fast_batch_size", "algo.trials_per_task",
            "algo.episodes_per_trial", "algo.inner_steps") if OmegaConf.select(cfg, k, default=None) is not None)
        raise ConfigError(f"this config needs about {_gib(need)} per meta-iteration ({sizes}), but {dev.type} memory "
                          f"has {_gib(have)} available: lower one of these sizes")


@contextmanager
def constructor_errors():
    """A constructor's error (Hydra wraps it in ``InstantiationException``) as one ``ConfigError`` line."""
    try:
        yield
    except InstantiationException as e:  # Hydra wraps what a constructor raised
        if isinstance(e.__cause__, DmrlError):
            raise e.__cause__ from None
        # Hydra's message ends with "full_key: <group>"; the constructor's own error says what is wrong
        # (e.g. a key that a checkpoint from another dmrl version has and this one does not).
        last = str(e).strip().splitlines()[-1]
        where = last.removeprefix("full_key: ") + ": " if last.startswith("full_key: ") else ""
        raise ConfigError(f"invalid configuration: {where}{e.__cause__ or last}") from None
    except TypeError as e:  # an unexpected key reached a constructor
        raise ConfigError(f"invalid configuration: {e}") from None


def build_env(cfg: DictConfig, device: str) -> tuple[object, object]:
    """The env and task distribution of ``cfg`` alone, no learner: what ``dmrl-eval policy=random``
    scores. Its ``_target_``s are checked first, as :func:`build`'s (only dmrl's own config groups' classes)."""
    check_targets(cfg, "config")  # before Hydra imports anything a config names
    dev = resolve_device(device)
    with constructor_errors():
        return instantiate(cfg.env, device=str(dev)), instantiate(cfg.tasks)


def build(cfg: DictConfig, device: str | None = None) -> Parts:
    """Instantiate env, task distribution, the algo's policy, baseline, sampler and meta-optimizer
    (``algo.policy``, ``algo.meta_optimizer``, ``algo.sampler``: dmrl.learner.PARTS), and the algorithm."""
    validate(cfg, TRAIN_RULES)  # its _target_s first, before anything a config names is imported
    dev = resolve_device(device or cfg.device)
    use_matmul(cfg.get("matmul") or "blas")  # (a config from before the key: torch's BLAS, as it ran)
    seed = int(cfg.seed)
    seed_everything(seed)
    with constructor_errors():
        env = instantiate(cfg.env, device=str(dev))
        tasks = instantiate(cfg.tasks)
        algo_cls = get_class(cfg.algo._target_)
        # the learner builds its own policy, sampler and extras (dmrl.learner: the contract); samplers
        # allocate their buffers only when they sample, after the memory check
        policy, sampler, extras, policy_args = algo_cls.build(cfg, env, dev, _derived_seed(seed, 0))
        check_memory(algo_cls, cfg, env, dev)
        if cfg.algo.sampler.name == "ray":  # (stored configs without a sampler: dmrl.stored.migrate)
            sampler = _ray_sampler(cfg, sampler, policy_args)
        meta_optimizer = instantiate(cfg.algo.meta_optimizer)
        # the learner's own keys: what its parts and extras built is handed over instead of their nodes
        algo_cfg = OmegaConf.masked_copy(cfg.algo, [k for k in cfg.algo if k not in extras and k not in PARTS])
        algo = instantiate(
            algo_cfg,
            policy=policy,
            sampler=sampler,
            meta_optimizer=meta_optimizer,
            tasks=tasks,
            task_rng=task_rng(seed, "train"),
            **extras,
        )
    return Parts(config=cfg, device=dev, env=env, tasks=tasks, policy=policy, algo=algo)
