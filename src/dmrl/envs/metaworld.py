"""Meta-World (Yu et al. 2019; Farama's ``metaworld`` package) as a batched dmrl env: ML1, ML10, ML45.

Tasks are the benchmark's own objects: ``metaworld.ML1(task_name, seed=...)`` (or ``ML10``/``ML45``)
builds ``train_tasks`` and ``test_tasks``, each a (class name, task data) pair; dmrl indexes them
(:class:`dmrl.tasks.metaworld.MetaWorldTasks`: task ``i`` of the ``train`` split is
``train_tasks[i]``, task ``i`` of ``test`` is ``test_tasks[i]``, stored as ``[split, i]``), so a
checkpoint stores indices and evaluation rebuilds the same held-out tasks from the benchmark's seed.

The env holds Meta-World's own env instances (``benchmark.train_classes[name](reward_function_version=...)``,
never a copy of their code), one per episode of a batch, re-used between batches, each told its
task with ``set_task``. Meta-World's step is mostly Python (the mocap action, the observation, the
reward's shaping terms; MuJoCo's ``mj_step`` is about a third of it), so a batch is stepped by
``workers`` processes, each owning a contiguous share of the episodes and stepping them in one
message per policy step (:mod:`dmrl.envs.env_workers`); ``workers: 1`` steps them in this process.

Observations are the 39 values of Meta-World's partially observable ML setting (the goal hidden);
actions 4 values in [-1, 1] (hand displacement and gripper); an episode lasts ``horizon`` steps
(500, the benchmark's) and never terminates early; each step's ``info["success"]`` is passed on, and
an episode succeeds if any of its steps does (the benchmark's convention; ``Episodes.task_success``).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor

from dmrl.envs.base import BatchedEnv
from dmrl.envs.env_workers import EnvWorkers
from dmrl.envs.mujoco_base import default_threads
from dmrl.errors import ConfigError
from dmrl.keys import SEED, Rule, int_at_least, is_int, one_of, optional
from dmrl.tasks.distributions import Tasks

BENCHMARKS = ("ML1", "ML10", "ML45")
MAX_STEPS = 500  # Meta-World's max_path_length: its envs refuse a step beyond it
# Resident memory of one Meta-World env instance (its own compiled Sawyer model, ~20 MiB of buffers,
# and its MjData; measured 21.2 MiB on reach-v3 with MuJoCo 3.3.0), with a margin
INSTANCE_BYTES = 24 * 2**20
INSTALL = "env=metaworld needs Meta-World: make install-metaworld (or pip install -e '.[metaworld]', which pins mujoco 3.3.0)"


def require_metaworld():
    """The ``metaworld`` module, or one line saying how to install it."""
    if importlib.util.find_spec("metaworld") is None:
        raise ConfigError(INSTALL)
    import metaworld

    return metaworld


@functools.cache
def load_benchmark(name: str, task_name: str | None, seed: int):
    """The benchmark object (built once per process: ML45 draws 50 goals for each of 50 classes)."""
    metaworld = require_metaworld()
    if name == "ML1":
        valid = sorted(metaworld.ML1.ENV_NAMES)
        if task_name not in valid:
            raise ConfigError(f"env.task_name must be one of Meta-World's ML1 tasks ({', '.join(valid)}), got {task_name!r}")
        return metaworld.ML1(task_name, seed=seed)
    return getattr(metaworld, name)(seed=seed)


def split_tasks(bench) -> tuple[list, list]:
    """The benchmark's ``(train_tasks, test_tasks)``: a task batch's ``(split, index)`` rows index them."""
    return list(bench.train_tasks), list(bench.test_tasks)


def all_classes(bench) -> dict:
    """Every env class of the benchmark by name (train and test classes)."""
    return {**bench.train_classes, **bench.test_classes}


class MetaWorld(BatchedEnv):
    """Meta-World's ``benchmark`` (ML1 of ``task_name``, ML10, ML45) at benchmark seed ``seed``."""

    KEYS = {
        "benchmark": one_of(BENCHMARKS),
        "task_name": optional(Rule(lambda v: isinstance(v, str) and v != "", "a task name"), "ML10 / ML45"),
        "seed": SEED,
        "reward_version": one_of(("v1", "v2")),
        "horizon": Rule(lambda v: is_int(v) and 1 <= v <= MAX_STEPS, f"an integer in [1, {MAX_STEPS}] (Meta-World's episodes)"),
        "workers": optional(int_at_least(1), "one per CPU this process may use"),
    }

    def __init__(self, benchmark: str = "ML1", task_name: str | None = "reach-v3", seed: int = 0,
                 reward_version: str = "v2", horizon: int = MAX_STEPS, workers: int | None = None,
                 device: str | torch.device = "cpu") -> None:
        super().__init__(horizon, device)
        self.bench_args = (benchmark, task_name if benchmark == "ML1" else None, int(seed))
        # each split's class name per task: what a batch's (split, index) rows name
        self.names = tuple([t.env_name for t in tasks] for tasks in split_tasks(load_benchmark(*self.bench_args)))
        self.obs_dim, self.act_dim = 39, 4
        self.workers = EnvWorkers(int(workers or default_threads()), self.bench_args, reward_version)
        self.engine = (f"Meta-World {importlib.metadata.version('metaworld')} env instances "
                       f"({self.workers.describe()}), reward {reward_version}")
        self.shape: tuple[int, int] | None = None  # (tasks, episodes) of the current reset
        self.instances: dict[tuple[int, str], int] = {}  # env instances each worker holds per class

    @contextmanager
    def rollout(self):
        """One torch thread in this process while the worker processes step: the policy's forward pass
        on a few hundred observations gains nothing from more, and an idle OpenMP pool that spins
        between steps takes the cores the workers need (measured: 7,750 vs 9,900 env steps/s on 2
        cores, benchmark.py --case metaworld_ml1). The thread count is restored after the rollout."""
        threads = torch.get_num_threads()
        if self.workers.local is None and threads > 1:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)

    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return -np.ones(self.act_dim), np.ones(self.act_dim)

    def task_groups(self, tasks: Tasks) -> list[str]:
        """The Meta-World class name of each task of a batch (evaluation reports success per class).  # [N]"""
        return [self.names[s][i] for s, i in np.asarray(tasks["task"])]

    def _reset(self, tasks: Tasks, episodes: int) -> Tensor:
        if "task" not in tasks:
            raise ConfigError(f"env=metaworld needs its benchmark's tasks (tasks=metaworld), got tasks with keys {sorted(tasks)}")
        refs = np.asarray(tasks["task"]).reshape(-1, 2)
        n = len(refs)
        seeds = self.rng.integers(0, 2**31 - 1, size=n * episodes)
        # simulation k is episode k % episodes of task k // episodes: (split, index, reset seed)
        sims = [(int(refs[k // episodes][0]), int(refs[k // episodes][1]), int(seeds[k])) for k in range(n * episodes)]
        self._check_memory(sims)
        obs = self.workers.reset(sims)
        self.shape = (n, episodes)
        return self._tensor(obs).reshape(n, episodes, self.obs_dim)

    def _step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, dict]:
        if self.shape is None:
            raise RuntimeError("reset() must come first")
        n, episodes = self.shape
        self.check_actions(actions, (n, episodes, self.act_dim))
        action = np.clip(actions.detach().to("cpu", torch.float64).numpy().reshape(n * episodes, self.act_dim), -1, 1)
        obs, reward, success = self.workers.step(action)
        shape = (n, episodes)
        terminated = torch.zeros(shape, dtype=torch.bool, device=self.device)
        info = {"success": torch.from_numpy(success.reshape(shape)).to(self.device)}
        return self._tensor(obs).reshape(n, episodes, self.obs_dim), self._tensor(reward).reshape(shape), terminated, info

    def _check_memory(self, sims: list) -> None:
        """Refuse, before any instance is made, a batch whose new env instances do not fit in memory."""
        from dmrl.build import available_bytes

        need: dict[tuple[int, str], int] = {}
        for worker, chunk in enumerate(self.workers.chunks(sims)):
            for split, index, _ in chunk:
                key = (worker, self.names[split][index])
                need[key] = need.get(key, 0) + 1
        new = sum(max(0, k - self.instances.get(key, 0)) for key, k in need.items())
        have = available_bytes(torch.device("cpu"))
        if new and have is not None and new * INSTANCE_BYTES > have:
            raise ConfigError(f"env=metaworld: this batch of {len(sims)} episodes needs {new} more Meta-World env "
                              f"instances (~{INSTANCE_BYTES >> 20} MiB each, {new * INSTANCE_BYTES / 2**30:.1f} GiB), but "
                              f"memory has {have / 2**30:.1f} GiB available: lower the episodes per batch "
                              f"(algo.meta_batch_size, algo.fast_batch_size or algo.trials_per_task)")
        for key, k in need.items():
            self.instances[key] = max(k, self.instances.get(key, 0))

    def close(self) -> None:
        self.workers.close()
