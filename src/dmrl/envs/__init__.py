"""Task families: batched tensor environments that step every episode of every task at once."""

import gymnasium

from dmrl.envs.base import BatchedEnv
from dmrl.envs.point_nav import PointNav, PointNavEnv

__all__ = ["BatchedEnv", "PointNav", "PointNavEnv"]

if "dmrl/PointNav-v0" not in gymnasium.registry:
    gymnasium.register(id="dmrl/PointNav-v0", entry_point="dmrl.envs.point_nav:PointNavEnv")
