"""Replay buffers: per-task transition stores with an explicit checkpoint format (tensors only)."""

from dmrl.buffers.replay import TaskReplay

__all__ = ["TaskReplay"]
