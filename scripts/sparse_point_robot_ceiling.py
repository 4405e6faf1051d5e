#!/usr/bin/env python
"""How often can K exploration trajectories find the goal of PEARL's sparse point robot at all?

    python scripts/sparse_point_robot_ceiling.py --num-tasks 100 --seed 7 --exploration 5

Plays scripted explorers on dmrl's own `env=sparse_point_robot` (start (0, 0), 20 steps of at most
0.1 per axis, goals on the upper half of the unit circle, the goal counts as hit within 0.2) on the
held-out goals that `dmrl-eval num_tasks=N seed=S` meets, and prints the fraction of tasks whose
goal is hit by at least one of the first k = 1..K exploration trajectories. A learner that knows
where the goal is once it has been hit (the sparse reward says so) hits it after exploration on
exactly that fraction, so each row bounds what a learner exploring that way can reach:

- ``straight, independent``: each trajectory heads straight for a point of the half circle drawn
  uniformly and stays there: PEARL's exploration with ``z`` from the prior when the prior maps
  exactly onto the task distribution (the policy is goal-directed for every ``z``: its critic
  learns the dense distance, as the reference trains it).
- ``straight, exact posterior``: the same, but each point is drawn from the exact posterior, the
  part of the half circle that no earlier trajectory came within 0.2 of: ideal posterior sampling
  (Thompson sampling), better than any learned posterior.
- ``straight, evenly spaced``: the k-th of K trajectories heads for the centre of the k-th of K
  equal arcs: the best that K fixed goal-directed trajectories can cover.
- ``sweep``: heads for the half circle's end and then walks along it, each trajectory continuing
  where the last one stopped (10 steps out, 10 along): exploration that no goal-directed policy
  performs, reachable by a learner that plans its exploration (Bayes-adaptive: RL², VariBAD).
"""

from __future__ import annotations

import argparse
import math

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from dmrl.config import CONF_DIR
from dmrl.envs import SparsePointRobot
from dmrl.evaluation import heldout_tasks

ARC = 3600  # points of the half circle the exact posterior is kept on


def play(env: SparsePointRobot, tasks: dict, targets: torch.Tensor, sweep_from: torch.Tensor | None = None):
    """One trajectory per task heading for ``targets [N, 2]`` at full speed (then, with ``sweep_from``
    [N] angles, walking counter-clockwise along the unit circle from there); positions ``[T, N, 2]``
    and whether the goal was hit ``[N]``."""
    pos = env.reset(tasks, 1)[:, 0]
    visited, hit = [], torch.zeros(pos.shape[0], dtype=torch.bool)
    angle = None if sweep_from is None else sweep_from.clone()
    for t in range(env.horizon):
        if angle is not None and t >= env.horizon // 2:
            angle = angle + env.max_action  # an arc step of length 0.1 on the unit circle
            targets = torch.stack([angle.cos(), angle.sin()], -1)
        act = ((targets - pos) / env.max_action).clamp(-1.0, 1.0)
        pos, _, _, _, info = env.step(act[:, None])
        pos = pos[:, 0]
        visited.append(pos)
        hit |= info["success"][:, 0]
    return torch.stack(visited), hit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-tasks", type=int, default=100)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--exploration", type=int, default=5, help="exploration trajectories K")
    args = p.parse_args()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=["env=sparse_point_robot", "algo=pearl"])
    env, pool = instantiate(cfg.env), instantiate(cfg.tasks)
    tasks = heldout_tasks(pool, args.num_tasks, args.seed)
    n, K = args.num_tasks, args.exploration
    gen = torch.Generator().manual_seed(args.seed)
    arc = torch.linspace(0.0, math.pi, ARC)
    arc_xy = torch.stack([arc.cos(), arc.sin()], -1)  # [A, 2]

    def point(angle: torch.Tensor) -> torch.Tensor:
        return torch.stack([angle.cos(), angle.sin()], -1)

    def found(explorer) -> list[float]:
        allowed = torch.ones(n, ARC, dtype=torch.bool)  # goals consistent with no hit so far
        anyhit, curve = torch.zeros(n, dtype=torch.bool), []
        for k in range(K):
            visited, hit = explorer(k, allowed)
            near = torch.cdist(arc_xy[None].expand(n, -1, -1), visited.transpose(0, 1)).amin(-1) <= env.goal_radius
            allowed &= ~near
            anyhit |= hit
            curve.append(anyhit.float().mean().item())
        return curve

    def uniform(k, allowed):
        return play(env, tasks, point(torch.rand(n, generator=gen) * math.pi))

    def posterior(k, allowed):
        weights = allowed.float() + 1e-12 * (~allowed.any(-1, keepdim=True)).float()
        return play(env, tasks, point(arc[torch.multinomial(weights, 1, generator=gen)[:, 0]]))

    def spaced(k, allowed):
        return play(env, tasks, point(torch.full((n,), (k + 0.5) * math.pi / K)))

    def sweep(k, allowed):
        start = torch.full((n,), k * env.horizon / 2 * env.max_action)  # where the last sweep stopped
        return play(env, tasks, point(start), sweep_from=start)

    print(f"goal found by the first k of {K} exploration trajectories, {n} held-out goals (seed {args.seed}):")
    print(f"{'explorer':<30}" + "".join(f"{'k=' + str(k + 1):>8}" for k in range(K)))
    for name, explorer in (("straight, independent", uniform), ("straight, exact posterior", posterior),
                           ("straight, evenly spaced", spaced), ("sweep", sweep)):
        print(f"{name:<30}" + "".join(f"{v:8.2f}" for v in found(explorer)))


if __name__ == "__main__":
    main()
