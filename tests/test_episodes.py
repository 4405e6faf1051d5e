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


# --- task pools ---------------------------------------------------------------------------------------
def test_task_pool_splits_are_disjoint_fixed_by_the_config_and_sampled_by_split():
    from dmrl.tasks import TaskPool, UniformBox, task_rng

    box = UniformBox("goal", -0.5, 0.5, 2)
    pool, same, other = TaskPool(box, 8, 3, seed=0), TaskPool(box, 8, 3, seed=0), TaskPool(box, 8, 3, seed=1)
    train, test = pool.splits["train"]["goal"], pool.splits["test"]["goal"]
    assert train.shape == (8, 2) and test.shape == (3, 2)
    assert not (train[:, None, :] == test[None, :, :]).all(-1).any()  # disjoint
    assert np.array_equal(train, same.splits["train"]["goal"]) and not np.array_equal(train, other.splits["train"]["goal"])
    drawn = pool.sample(5, task_rng(0, "train"))["goal"]
    assert all((g == train).all(-1).any() for g in drawn) and len(np.unique(drawn, axis=0)) == 5
    held_out = pool.sample(7, task_rng(0, "test"), split="test")["goal"]  # larger than the split: each 2 or 3 times
    assert all((g == test).all(-1).any() for g in held_out)
    assert sorted(np.unique(held_out, axis=0, return_counts=True)[1].tolist()) == [2, 2, 3]


def test_a_checkpoint_stores_the_pool_and_evaluation_uses_its_test_split(tmp_path):
    from hydra import compose, initialize_config_dir

    from dmrl.build import build
    from dmrl.checkpoint import load_checkpoint, save_checkpoint
    from dmrl.config import CONF_DIR
    from dmrl.evaluation import heldout_tasks
    from dmrl.loop import checkpoint_payload, restore

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=["device=cpu", "tasks=point_nav_pool", "experiment=smoke"])
    parts = build(cfg)
    assert parts.algo.sample_tasks()["goal"].shape == (4, 2)
    test = parts.tasks.splits["test"]["goal"]
    held = heldout_tasks(parts.tasks, 20, seed=3)["goal"]
    assert sorted(map(tuple, held)) == sorted(map(tuple, test))  # all 20 held-out goals, from the test split only
    path = tmp_path / "c.pt"
    save_checkpoint(path, checkpoint_payload(parts, "", 0, 0))
    state = load_checkpoint(path)  # weights_only: the pool travels as tensors
    other = build(cfg)
    other.tasks.splits["test"]["goal"] = other.tasks.splits["test"]["goal"] + 1.0  # a pool that differs ...
    restore(other, state)
    assert np.array_equal(other.tasks.splits["test"]["goal"], test)  # ... takes the checkpoint's tasks
