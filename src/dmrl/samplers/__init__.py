"""Samplers roll out many tasks x episodes at once into a time-major episode batch."""

from dmrl.samplers.batched import BatchedSampler
from dmrl.samplers.episodes import Episodes

__all__ = ["BatchedSampler", "Episodes"]
