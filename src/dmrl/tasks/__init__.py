"""Task distributions: ``sample(n, rng) -> tasks`` (a dict of ``[n, ...]`` arrays)."""

from dmrl.tasks.distributions import TaskDistribution, UniformBox, task_rng

__all__ = ["TaskDistribution", "UniformBox", "task_rng"]
