"""Task families: batched tensor environments that step every episode of every task at once."""

import gymnasium

from dmrl.envs.bandit import Bandit
from dmrl.envs.base import BatchedEnv
from dmrl.envs.point_nav import PointNav, PointNavEnv
from dmrl.envs.point_robot import PointRobot, SparsePointRobot
from dmrl.envs.tabular_mdp import TabularMDP

__all__ = ["Bandit", "BatchedEnv", "PointNav", "PointNavEnv", "PointRobot", "SparsePointRobot", "TabularMDP"]

if "dmrl/PointNav-v0" not in gymnasium.registry:
    gymnasium.register(id="dmrl/PointNav-v0", entry_point="dmrl.envs.point_nav:PointNavEnv")
