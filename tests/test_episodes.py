"""What the env step and the episode batch carry: gymnasium's terminated / truncated (a time limit
is not a terminal state), the next observation, and success where an env reports it."""

from __future__ import annotations

import numpy as np
import torch

from dmrl.envs.point_nav import PointNav
from dmrl.policies.gaussian_mlp import GaussianMLPPolicy
from dmrl.samplers.batched import BatchedSampler


def test_a_goal_reached_is_terminated_and_the_time_limit_is_truncated():
    env = PointNav(horizon=3)  # raw velocities, clipped to 0.1 per axis
    env.reset({"goal": np.array([[0.1, 0.0], [0.9, 0.9]], dtype=np.float32)}, 1)
    push = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]])
    _, _, term, trunc, info = env.step(push)
    assert term.tolist() == [[True], [False]] and trunc.tolist() == [[False], [False]] and info == {}
    env.step(push)
    _, _, term, trunc, _ = env.step(push)  # the third step: the horizon
    assert term.tolist() == [[True], [False]]  # the first episode ended at its goal, not at the limit
    assert trunc.tolist() == [[False], [True]]


def test_the_batch_carries_next_obs_terminated_and_truncated():
    torch.manual_seed(0)
    env = PointNav(horizon=5)
    policy = GaussianMLPPolicy(2, 2, (4,), "tanh")
    with torch.no_grad():  # a policy that heads right at full speed: the goal at (0.2, 0) is reached at t = 1
        for p in policy.parameters():
            p.zero_()
        policy.log_std.fill_(-20.0)
        last_bias = [p for n, p in policy.named_parameters() if n.endswith("bias")][-1]
        last_bias.copy_(torch.tensor([1.0, 0.0]))
    sampler = BatchedSampler(env, policy, 3, seed=0)
    ep = sampler.sample({"goal": np.array([[0.2, 0.0], [-0.9, 0.9]], dtype=np.float32)})
    assert ep.obs.shape[0] == 5
    torch.testing.assert_close(ep.next_obs[:-1][ep.mask[1:] > 0], ep.obs[1:][ep.mask[1:] > 0])
    # task 0: terminated at t = 1, nothing after; task 1: never terminated, truncated at the last step
    assert ep.terminated[:, 0].any(-1).tolist() == [False, True, False, False, False]
    assert ep.mask[:, 0, 0].tolist() == [1, 1, 0, 0, 0]
    assert not ep.truncated[:, 0].any() and not ep.terminated[:, 1].any()
    assert ep.truncated[:, 1].all(-1).tolist() == [False, False, False, False, True]
    assert ep.success is None and ep.task_success is None  # point_nav reports no success
