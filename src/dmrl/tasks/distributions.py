"""Task distributions and the random streams they draw from.

Train and test tasks come from the same distribution but from disjoint streams: each stream is a
``numpy`` generator spawned from ``SeedSequence(seed)`` with its own spawn key, so no choice of
seeds makes a held-out task coincide with the training stream (shared/REFERENCES.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from dmrl.keys import NAME, NUMBER, POSITIVE, CrossCheck, Rule, int_at_least, is_num

Tasks = dict[str, np.ndarray]

STREAMS = {"train": 0, "test": 1}
SPLITS = tuple(STREAMS)  # what a batch of tasks is drawn for: training, or held-out evaluation


def task_rng(seed: int, stream: str) -> np.random.Generator:
    """The generator of the ``train`` or ``test`` task stream for ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(STREAMS[stream],)))


class TaskDistribution(Protocol):
    def sample(self, n: int, rng: np.random.Generator, split: str = "train") -> Tasks: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class TaskStream:
    """A distribution sampled afresh each time: its ``train`` and ``test`` tasks differ by the
    stream ``rng`` they are drawn from (:func:`task_rng`), so ``split`` changes nothing here and a
    checkpoint needs nothing of it (contrast :class:`dmrl.tasks.pools.TaskPool`)."""

    def sample(self, n: int, rng: np.random.Generator, split: str = "train") -> Tasks:
        return self.draw(n, rng)

    def draw(self, n: int, rng: np.random.Generator) -> Tasks:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


# a bound of a box: one number for every coordinate, or one per coordinate
BOUND = Rule(lambda v: is_num(v) or (isinstance(v, (list, tuple)) and len(v) >= 1 and all(is_num(x) for x in v)),
             "a number or a list of numbers (one per coordinate)")


class UniformBox(TaskStream):
    """``task[key] ~ U[low, high]^dim`` (e.g. 2-D navigation goals, MAML section 5.3)."""

    # Its config keys (dmrl.keys; checked by dmrl.config.validate before anything is built)
    KEYS = {"key": NAME, "low": BOUND, "high": BOUND, "dim": int_at_least(1)}
    CROSS_CHECKS = (
        CrossCheck(("low", "dim"), lambda low, dim: is_num(low) or len(low) in (1, dim),
                   "{at}low must be a number or a list of {dim} numbers (one per coordinate), got {low}"),
        CrossCheck(("high", "dim"), lambda high, dim: is_num(high) or len(high) in (1, dim),
                   "{at}high must be a number or a list of {dim} numbers (one per coordinate), got {high}"),
        CrossCheck(("low", "high"), lambda low, high: bool(np.all(np.asarray(low) <= np.asarray(high))),
                   "{at}low must be <= {at}high, got low={low} high={high}"),
    )

    def __init__(self, key: str, low: float | Sequence[float], high: float | Sequence[float], dim: int) -> None:
        self.key, self.dim = key, dim
        self.low = np.broadcast_to(np.asarray(low, dtype=np.float64), (dim,)).copy()
        self.high = np.broadcast_to(np.asarray(high, dtype=np.float64), (dim,)).copy()

    def draw(self, n: int, rng: np.random.Generator) -> Tasks:
        return {self.key: rng.uniform(self.low, self.high, size=(n, self.dim)).astype(np.float32)}


class Arc(TaskStream):
    """Points on a circle of ``radius`` at angles ``~ U[low, high]`` (PEARL's sparse point robot:
    the upper half of the unit circle, ``[0, pi]``), as ``task[key] [n, 2]``."""

    KEYS = {"key": NAME, "radius": POSITIVE, "low": NUMBER, "high": NUMBER}
    CROSS_CHECKS = (CrossCheck(("low", "high"), lambda low, high: low <= high,
                               "{at}low must be <= {at}high, got low={low} high={high}"),)

    def __init__(self, key: str = "goal", radius: float = 1.0, low: float = 0.0, high: float = float(np.pi)) -> None:
        self.key, self.radius, self.low, self.high = key, float(radius), float(low), float(high)

    def draw(self, n: int, rng: np.random.Generator) -> Tasks:
        angle = rng.uniform(self.low, self.high, size=n)
        return {self.key: (self.radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)).astype(np.float32)}
