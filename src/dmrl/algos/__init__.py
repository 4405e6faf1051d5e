"""Meta-learners: ``meta_step()`` for the training loop; for evaluation, ``adaptation_curve(tasks,
steps)`` (gradient-based: MAML) or ``trial_curve(tasks)`` (context-based: RL²)."""

from dmrl.algos.maml import MAML
from dmrl.algos.rl2 import RL2

__all__ = ["MAML", "RL2"]
