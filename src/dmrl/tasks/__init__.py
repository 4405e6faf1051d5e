"""Task distributions: ``sample(n, rng) -> tasks`` (a dict of ``[n, ...]`` arrays)."""

from dmrl.tasks.discrete import BernoulliBandits, RandomMDPs
from dmrl.tasks.distributions import TaskDistribution, UniformBox, task_rng

__all__ = ["BernoulliBandits", "RandomMDPs", "TaskDistribution", "UniformBox", "task_rng"]
