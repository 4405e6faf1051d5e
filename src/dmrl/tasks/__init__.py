"""Task distributions: ``sample(n, rng) -> tasks`` (a dict of ``[n, ...]`` arrays)."""

from dmrl.tasks.discrete import BernoulliBandits, RandomMDPs
from dmrl.tasks.distributions import Arc, TaskDistribution, TaskStream, UniformBox, task_rng
from dmrl.tasks.pools import TaskPool

__all__ = ["Arc", "BernoulliBandits", "RandomMDPs", "TaskDistribution", "TaskPool", "TaskStream", "UniformBox", "task_rng"]
