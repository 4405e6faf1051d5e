"""Task distributions and the random streams they draw from.

Train and test tasks come from the same distribution but from disjoint streams: each stream is a
``numpy`` generator spawned from ``SeedSequence(seed)`` with its own spawn key, so no choice of
seeds makes a held-out task coincide with the training stream (shared/REFERENCES.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from dmrl.errors import ConfigError

Tasks = dict[str, np.ndarray]

STREAMS = {"train": 0, "test": 1}


def task_rng(seed: int, stream: str) -> np.random.Generator:
    """The generator of the ``train`` or ``test`` task stream for ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(STREAMS[stream],)))


class TaskDistribution(Protocol):
    def sample(self, n: int, rng: np.random.Generator) -> Tasks: ...


class UniformBox:
    """``task[key] ~ U[low, high]^dim`` (e.g. 2-D navigation goals, MAML section 5.3)."""

    def __init__(self, key: str, low: float | Sequence[float], high: float | Sequence[float], dim: int) -> None:
        self.key, self.dim = key, dim
        self.low = np.broadcast_to(np.asarray(low, dtype=np.float64), (dim,)).copy()
        self.high = np.broadcast_to(np.asarray(high, dtype=np.float64), (dim,)).copy()
        if np.any(self.low > self.high):
            raise ConfigError(f"tasks.low must be <= tasks.high, got low={low} high={high}")

    def sample(self, n: int, rng: np.random.Generator) -> Tasks:
        return {self.key: rng.uniform(self.low, self.high, size=(n, self.dim)).astype(np.float32)}
