"""Meta-learners: ``meta_step()`` for the training loop, ``adaptation_curve(tasks, steps)`` for evaluation."""

from dmrl.algos.maml import MAML

__all__ = ["MAML"]
