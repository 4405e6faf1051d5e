"""Meta-learners, each implementing the contract of :mod:`dmrl.learner` (``meta_step``,
``meta_test``, ``final_budget``, ``build``, declared ``STATE`` / ``HEADLINE`` / ``STEP_SIZE_KEYS``)."""

from dmrl.algos.maml import MAML
from dmrl.algos.meta_sgd import MetaSGD
from dmrl.algos.multitask import MultiTask, Oracle
from dmrl.algos.pearl import PEARL
from dmrl.algos.promp import ProMP
from dmrl.algos.rl2 import RL2

__all__ = ["MAML", "MetaSGD", "MultiTask", "Oracle", "PEARL", "ProMP", "RL2"]
