"""algo/sampler=ray: rollouts on Ray actors match the local sampler in distribution, honour per-task
parameters, are reproducible from the seed, and carry a short training run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

ray = pytest.importorskip("ray")

from dmrl.build import build  # noqa: E402
from dmrl.config import CONF_DIR  # noqa: E402
from dmrl.loop import train  # noqa: E402
from dmrl.samplers.ray_sampler import RaySampler  # noqa: E402
from dmrl.tasks.distributions import task_rng  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


# Every build starts 2 actors and a module's fixtures keep theirs: a quarter CPU each lets all of them
# fit on the 2 logical CPUs of the test instance.
RAY = ("algo/sampler=ray", "algo.sampler.workers=2", "algo.sampler.cpus_per_worker=0.25")


def parts_for(*overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=["device=cpu", *overrides])
    return build(cfg)


@pytest.fixture(scope="module")
def pair(local_ray):
    """The same run built with the local sampler and with 2 Ray workers."""
    return parts_for(), parts_for(*RAY)


def test_same_shapes_and_same_mean_return(pair):
    local, remote = pair
    assert isinstance(remote.algo.sampler, RaySampler)
    tasks = local.tasks.sample(40, task_rng(0, "test"))
    a = local.algo.sampler.sample(tasks, None, 20)
    b = remote.algo.sampler.sample(tasks, None, 20)
    for name in ("obs", "actions", "rewards", "mask"):
        assert getattr(a, name).shape[1:] == getattr(b, name).shape[1:], name
    ra, rb = a.task_returns.numpy(), b.task_returns.numpy()  # [40] each, one task's mean over 20 episodes
    # Paired by task: the difference of the two means has the per-task differences' standard error.
    diff = rb - ra
    se = diff.std(ddof=1) / math.sqrt(len(diff))
    assert abs(diff.mean()) < 4 * se + 1e-6, (ra.mean(), rb.mean(), se)
    assert not torch.equal(a.actions, b.actions)  # the workers draw their own noise


def test_per_task_params_reach_their_chunk(pair):
    _, remote = pair
    sampler = remote.algo.sampler
    tasks = remote.tasks.sample(6, task_rng(0, "test"))
    p = {k: v.detach().unsqueeze(0).repeat(6, *[1] * v.dim()) for k, v in sampler.policy.named_parameters()}
    p["mu.bias"][3:] = 50.0  # the second worker's chunk (tasks 3..5)
    p["log_std"][:] = math.log(1e-3)
    ep = sampler.sample(tasks, p, 4)
    first = ep.actions[0].mean(dim=(1, 2))  # [6], first step's mean action per task
    assert torch.all(first[3:] > 49) and torch.all(first[:3].abs() < 5)


def test_same_seed_same_episodes(local_ray):
    runs = []
    for _ in range(2):
        parts = parts_for(*RAY, "seed=3")
        tasks = parts.tasks.sample(5, task_rng(0, "train"))
        runs.append([parts.algo.sampler.sample(tasks, None, 3) for _ in range(2)])
    for x, y in zip(runs[0], runs[1]):
        assert torch.equal(x.actions, y.actions) and torch.equal(x.rewards, y.rewards)
    assert not torch.equal(runs[0][0].actions, runs[0][1].actions)  # each call draws fresh worker seeds


def test_training_run_through_build(local_ray, tmp_path):
    parts = parts_for("experiment=smoke", *RAY)
    metrics = train(parts, iterations=2, run_dir=tmp_path, checkpoint_every=1, checkpoint_keep=1,
                    tensorboard=False, progress=False)
    values = [v for v in metrics.values() if isinstance(v, (int, float))]
    assert values and all(np.isfinite(values))


def test_rl2_trials_on_ray_workers_match_the_local_sampler(local_ray):
    rl2 = ("env=bandit", "algo=rl2", "algo.policy.hidden_size=8", "algo.episodes_per_trial=6")
    local, remote = parts_for(*rl2), parts_for(*rl2, *RAY)
    remote.policy.load_state_dict(local.policy.state_dict())
    tasks = local.tasks.sample(300, task_rng(0, "test"))
    a, b = local.algo.sampler.sample(tasks, 1), remote.algo.sampler.sample(tasks, 1)
    assert a.inputs.shape == b.inputs.shape == (6, 300, 1, local.policy.input_dim)
    # The workers' trials replay exactly under the driver's policy: the hidden state was handled the same.
    with torch.no_grad():
        head, _ = remote.policy(b.flat("inputs"))
    torch.testing.assert_close(remote.policy.log_prob(head, b.flat("actions")), b.flat("log_probs"), atol=1e-5,
                               rtol=1e-5)
    diff = (b.episode_returns.sum(0) - a.episode_returns.sum(0)).flatten().numpy()  # [300] trial returns
    assert abs(diff.mean()) < 4 * diff.std(ddof=1) / math.sqrt(len(diff)) + 1e-6
