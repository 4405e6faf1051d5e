"""Fixed task pools with named splits (PEARL's 100 train / 30 test cheetah-vel tasks; a benchmark's
own splits).

A :class:`TaskPool` draws ``train + test`` tasks once from any distribution, from its own stream of
``seed`` (``tasks.seed``: a property of the pool, not of the run, so every run and evaluation of
one config meets the same tasks), and keeps them indexed: the first ``train`` are the ``train``
split, the rest the ``test`` split, disjoint by construction. Training samples the ``train``
split, evaluation the ``test`` split. A checkpoint stores the pool's arrays, so a resumed run or an
evaluation uses exactly the tasks it was trained on even if the distribution's code changes.
"""

from __future__ import annotations

import numpy as np
import torch

from dmrl.keys import COMPONENT, SEED, int_at_least
from dmrl.tasks.distributions import SPLITS, TaskDistribution, Tasks

POOL_STREAM = 7  # the SeedSequence spawn key of pool draws (0 and 1 are the train / test streams)


class TaskPool:
    # Its config keys (dmrl.keys; checked by dmrl.config.validate before anything is built)
    KEYS = {"distribution": COMPONENT, "train": int_at_least(1), "test": int_at_least(1), "seed": SEED}

    def __init__(self, distribution: TaskDistribution, train: int, test: int, seed: int = 0) -> None:
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(POOL_STREAM,)))
        everything = distribution.sample(train + test, rng)
        self.splits: dict[str, Tasks] = {
            "train": {k: np.ascontiguousarray(v[:train]) for k, v in everything.items()},
            "test": {k: np.ascontiguousarray(v[train:]) for k, v in everything.items()},
        }

    def size(self, split: str) -> int:
        return len(next(iter(self.splits[split].values())))

    def indices(self, n: int, rng: np.random.Generator, split: str = "train") -> np.ndarray:
        """Which tasks of ``split`` a batch of ``n`` holds: distinct while ``n`` <= the split's size,
        then every task ``n // size`` or one more times (a held-out set larger than the split
        weighs its tasks evenly).  # [n]"""
        size = self.size(split)
        order = rng.permutation(size)
        return np.resize(order, n) if n > size else order[:n]

    def at(self, indices, split: str = "train") -> Tasks:
        """The tasks of ``split`` at ``indices`` (a learner that keeps per-task data, e.g. PEARL's buffers)."""
        idx = np.asarray(indices)
        return {k: v[idx] for k, v in self.splits[split].items()}

    def sample(self, n: int, rng: np.random.Generator, split: str = "train") -> Tasks:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        idx = self.indices(n, rng, split)
        return {k: v[idx] for k, v in self.splits[split].items()}

    def state_dict(self) -> dict:
        """The pool's arrays as tensors (what ``weights_only`` loading accepts)."""
        return {split: {k: torch.from_numpy(v.copy()) for k, v in tasks.items()} for split, tasks in self.splits.items()}

    def load_state_dict(self, state: dict) -> None:
        """The checkpoint's tasks (they must have the config's keys and split sizes)."""
        for split in SPLITS:
            ours, theirs = self.splits[split], state.get(split, {})
            if set(ours) != set(theirs) or any(np.shape(theirs[k]) != ours[k].shape for k in ours):
                raise ValueError(f"the stored {split} split does not fit the config's task pool")
        self.splits = {split: {k: np.asarray(v.numpy() if isinstance(v, torch.Tensor) else v)
                               for k, v in state[split].items()} for split in SPLITS}
