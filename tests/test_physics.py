"""The two physics engines (dmrl.envs.physics): mujoco.batch and the thread pool give the same episodes."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from dmrl.config import CONF_DIR
from dmrl.envs import physics
from dmrl.errors import ConfigError

HAS_BATCH = physics._mjbatch is not None


def rollout(family: str, engine: str, monkeypatch, steps: int = 30):
    """Observations and rewards of 2 tasks x 3 episodes under fixed random actions, on ``engine``."""
    monkeypatch.setenv("DMRL_PHYSICS", engine)
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=[f"env={family}", "device=cpu", "env.nthread=2"])
    env, dist = instantiate(cfg.env, device="cpu"), instantiate(cfg.tasks)
    env.seed(3)
    tasks = dist.sample(2, np.random.default_rng(1))
    gen = torch.Generator().manual_seed(5)
    obs, rewards = [env.reset(tasks, 3)], []
    for t in range(steps):
        if t == steps // 2:  # a subset of the episodes ended: only the others step
            env.done[::2] = True
        out = env.step(torch.rand((2, 3, env.act_dim), generator=gen) * 2 - 1)
        obs.append(out[0])
        rewards.append(out[1])
    return torch.stack(obs), torch.stack(rewards), env


@pytest.mark.skipif(not HAS_BATCH, reason="needs MuJoCo 4's mujoco.batch to compare with")
@pytest.mark.parametrize("family", ["cheetah_vel", "ant_goal", "hopper_params"])
def test_thread_pool_equals_mujoco_batch(family, monkeypatch):
    obs_b, rew_b, env_b = rollout(family, "auto", monkeypatch)
    obs_p, rew_p, env_p = rollout(family, "pool", monkeypatch)
    assert type(env_b._batch).__name__ == "Batch" and isinstance(env_p._batch, physics.ThreadPoolBatch)
    # the same mj_step on the same states: equal to float32 rounding of the observations
    torch.testing.assert_close(obs_p, obs_b, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(rew_p, rew_b, rtol=1e-6, atol=1e-6)
    qpos_b, qvel_b = env_b.get_state()
    qpos_p, qvel_p = env_p.get_state()
    np.testing.assert_allclose(qpos_p, qpos_b, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(qvel_p, qvel_b, rtol=1e-9, atol=1e-9)


def test_thread_pool_equals_one_mjdata_stepped_by_hand():
    """Chunks on two threads, a subset step and a per-simulation model: each simulation is plain mj_step."""
    spec = mujoco.MjSpec.from_string("""<mujoco><worldbody><body><freejoint/><geom size="0.1" mass="1"/></body>
      <geom type="plane" size="5 5 0.1"/></worldbody></mujoco>""")
    model = spec.compile()
    heavy = spec.compile()
    heavy.body_mass[1] *= 3.0
    batch = physics.ThreadPoolBatch(model, nsim=5, nthread=2)
    qpos, qvel = batch.bind("qpos"), batch.bind("qvel")
    batch.set_models([model, heavy, model, heavy, model])
    batch.reset()
    rng = np.random.default_rng(0)
    start = rng.normal(size=qvel.shape)
    qvel[:] = start
    batch.forward()
    mask = np.array([True, False, True, True, False])
    batch.step(nstep=4)
    batch.step(mask, nstep=3)
    for i, m in enumerate([model, heavy, model, heavy, model]):
        d = mujoco.MjData(m)
        mujoco.mj_forward(m, d)  # the reset's
        d.qvel[:] = start[i]
        mujoco.mj_forward(m, d)
        mujoco.mj_step(m, d, 4 + (3 if mask[i] else 0))
        np.testing.assert_array_equal(qpos[i], d.qpos)
        np.testing.assert_array_equal(qvel[i], d.qvel)


def test_unknown_engine_is_one_line(monkeypatch):
    monkeypatch.setenv("DMRL_PHYSICS", "gpu")
    with pytest.raises(ConfigError, match="DMRL_PHYSICS='gpu': one of auto"):
        physics.engine_name()
