"""Meta-World's own task splits as a dmrl task pool (the learner contract's ``train`` / ``test``).

The ``train`` split is the benchmark's ``train_tasks`` (ML1: 50 goals of one class; ML10: 50 goals
of each of 10 classes; ML45: of 45), the ``test`` split its ``test_tasks`` (ML1: 50 other goals of
the same class; ML10 / ML45: 50 goals of each of 5 held-out classes). A batch of tasks is
``{"task": [N, 2]}``, each row ``(split, index)`` into those lists (0 train, 1 test), which the env
(:class:`dmrl.envs.metaworld.MetaWorld`) resolves to the benchmark's ``Task`` objects. A
checkpoint stores the indices and a fingerprint of every task's data (the class name and the
goal / object positions Meta-World drew for it), so a resume or an evaluation that rebuilds the
benchmark from its seed gets exactly the tasks the run was trained on, or one line saying it did not.
"""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import torch

from dmrl.keys import SEED, Rule, one_of, optional
from dmrl.tasks.distributions import SPLITS, Tasks
from dmrl.tasks.pools import TaskPool


def fingerprint(tasks: list) -> np.ndarray:
    """A digest of each task's class name and data (pickled by Meta-World: its goal and object positions).  # [n, 8] uint8"""
    rows = []
    for task in tasks:
        data = pickle.loads(task.data)  # Meta-World's own data, made in this process, never a file
        h = hashlib.sha256(task.env_name.encode())
        h.update(np.ascontiguousarray(np.asarray(data.get("rand_vec"), dtype=np.float64)).tobytes())
        rows.append(np.frombuffer(h.digest()[:8], dtype=np.uint8))
    return np.stack(rows)


class MetaWorldTasks(TaskPool):
    """The ``train`` / ``test`` tasks of Meta-World's ``benchmark`` (``task_name`` for ML1) at ``seed``."""

    KEYS = {"distribution": None, "train": None, "test": None,  # the benchmark's own splits, not a drawn pool
            "benchmark": one_of(("ML1", "ML10", "ML45")),
            "task_name": optional(Rule(lambda v: isinstance(v, str) and v != "", "a task name"), "ML10 / ML45"),
            "seed": SEED}

    def __init__(self, benchmark: str = "ML1", task_name: str | None = "reach-v3", seed: int = 0) -> None:
        from dmrl.envs.metaworld import load_benchmark, split_tasks

        bench = load_benchmark(benchmark, task_name if benchmark == "ML1" else None, int(seed))
        self.splits: dict[str, Tasks] = {}
        self.digests: dict[str, np.ndarray] = {}
        self.names: dict[str, list[str]] = {}
        for s, (split, tasks) in enumerate(zip(SPLITS, split_tasks(bench))):
            self.splits[split] = {"task": np.stack([np.full(len(tasks), s), np.arange(len(tasks))], axis=1)}
            self.digests[split] = fingerprint(tasks)
            self.names[split] = [t.env_name for t in tasks]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "digest": {split: torch.from_numpy(d.copy()) for split, d in self.digests.items()}}

    def load_state_dict(self, state: dict) -> None:
        stored = state.get("digest", {})
        for split in SPLITS:
            theirs = stored.get(split)
            if theirs is None or tuple(theirs.shape) != self.digests[split].shape or not np.array_equal(
                    np.asarray(theirs), self.digests[split]):
                raise ValueError(f"the checkpoint's Meta-World {split} tasks differ from the ones this Meta-World "
                                 f"builds from the stored benchmark and seed (another metaworld version?)")
        super().load_state_dict({split: state[split] for split in SPLITS})
