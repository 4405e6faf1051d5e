"""MuJoCo locomotion families: shapes, rewards by hand, gymnasium v5 parity, batching, termination."""

from __future__ import annotations

import copy
from functools import cache

import gymnasium
import mujoco
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from dmrl.config import CONF_DIR, TRAIN_RULES, validate
from dmrl.envs.locomotion import HalfCheetahVel, HopperParams
from dmrl.errors import ConfigError
from dmrl.keys import check_node
from dmrl.tasks.locomotion import Directions, Disk, DynamicsScales

DIMS = {  # family: (obs_dim, act_dim)
    "cheetah_vel": (17, 6), "cheetah_dir": (17, 6),
    "ant_vel": (105, 8), "ant_dir": (105, 8), "ant_goal": (105, 8),
    "hopper_params": (11, 3), "walker_params": (17, 6),
}
FAMILIES = sorted(DIMS)


@cache
def config(family: str, *overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="train", overrides=[f"env={family}", "device=cpu", *overrides])


def make(family: str, *overrides: str):
    cfg = config(family, *overrides)
    env, dist = instantiate(cfg.env, device="cpu"), instantiate(cfg.tasks)
    env.seed(0)
    return env, dist


def actions(env, rng, n, episodes, scale=1.5):
    """Random actions, some beyond the [-1, 1] control range to exercise the clipping."""
    return torch.as_tensor(rng.uniform(-scale, scale, size=(n, episodes, env.act_dim)))


# one simulation replayed with plain mujoco.mj_step, gymnasium-style ---------------------------------


class Plain:
    def __init__(self, env, model, qpos, qvel):
        self.env, self.m = env, model
        self.d = mujoco.MjData(model)
        self.d.qpos[:], self.d.qvel[:] = qpos, qvel
        mujoco.mj_forward(model, self.d)

    def pos(self):
        return self.d.xpos[1, :2].copy() if self.env.xml == "ant.xml" else self.d.qpos[:1].copy()

    def step(self, action):
        """Gymnasium's step: ctrl, frame_skip mj_steps; returns the velocity and the applied control."""
        before = self.pos()
        a = np.clip(action, -1.0, 1.0)
        self.d.ctrl[:] = a
        mujoco.mj_step(self.m, self.d, nstep=self.env.frame_skip)
        return (self.pos() - before) / (self.m.opt.timestep * self.env.frame_skip), a


def expected_reward(family, env, plain, task, velocity, a):
    """The family's reward from REFERENCES.md, computed from gymnasium-style quantities."""
    q, d = plain.d.qpos, plain.d
    if family.startswith("cheetah"):
        term = -abs(velocity[0] - task[0]) if family == "cheetah_vel" else task[0] * velocity[0]
        return term - 0.05 * np.sum(a**2), True
    if family.startswith("ant"):
        healthy = bool(np.isfinite(q).all() and np.isfinite(d.qvel).all() and 0.2 <= q[2] <= 1.0)
        contact = 5e-4 * np.sum(np.clip(d.cfrc_ext, -1, 1) ** 2)
        term = {"ant_vel": lambda: -abs(velocity[0] - task[0]), "ant_dir": lambda: task[0] * velocity[0],
                "ant_goal": lambda: -np.abs(d.xpos[1, :2] - task).sum()}[family]()
        return term + 1.0 * healthy - 0.005 * np.sum(a**2) - contact, healthy
    if family == "hopper_params":
        state = np.concatenate([q[2:], d.qvel])
        healthy = bool(np.all((-100 < state) & (state < 100)) and q[1] > 0.7 and -0.2 < q[2] < 0.2)
    else:
        healthy = bool(0.8 < q[1] < 2.0 and -1.0 < q[2] < 1.0)
    return velocity[0] + 1.0 * healthy - 1e-3 * np.sum(a**2), healthy


def task_models(env, tasks, n):
    """Each task's model, scaled by hand for the dynamics families."""
    if not env.xml.startswith(("hopper", "walker")):
        return [env.model] * n
    models = []
    for i in range(n):
        m = copy.copy(env.model)
        for field in ("body_mass", "body_inertia", "dof_damping", "geom_friction"):
            getattr(m, field)[...] = getattr(env.model, field) * tasks[field][i]
        mujoco.mj_setConst(m, mujoco.MjData(m))
        models.append(m)
    return models


def task_vector(family, tasks, i):
    for key in ("velocity", "direction", "goal"):
        if key in tasks:
            return np.asarray(tasks[key][i], dtype=np.float64)
    return None


# tests ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_reset_and_step_shapes(family):
    env, dist = make(family)
    assert (env.obs_dim, env.act_dim, env.horizon) == (*DIMS[family], 200)
    obs = env.reset(dist.sample(2, np.random.default_rng(0)), 3)
    assert obs.shape == (2, 3, env.obs_dim) and obs.dtype == torch.float32
    obs, reward, done, _, _ = env.step(torch.zeros(2, 3, env.act_dim))
    assert obs.shape == (2, 3, env.obs_dim) and obs.dtype == torch.float32
    assert reward.shape == (2, 3) and reward.dtype == torch.float32
    assert done.shape == (2, 3) and done.dtype == torch.bool
    assert torch.isfinite(obs).all() and torch.isfinite(reward).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_reward_matches_the_formula_on_a_known_state(family):
    env, dist = make(family)
    tasks = dist.sample(1, np.random.default_rng(1))
    env.reset(tasks, 1)
    m = env.model
    qpos = m.qpos0 + 0.02 * np.sin(np.arange(m.nq))
    qvel = 0.3 * np.cos(np.arange(m.nv))
    if family.startswith("ant"):
        qpos[2] = 0.23  # torso (radius 0.25) on the floor, still healthy: a contact cost to check
    env.set_state(qpos, qvel)
    action = np.linspace(-1.4, 1.4, env.act_dim)  # the ends are clipped to [-1, 1]
    _, reward, done, _, _ = env.step(torch.as_tensor(action).reshape(1, 1, -1))

    plain = Plain(env, task_models(env, tasks, 1)[0], qpos, qvel)
    velocity, a = plain.step(action)
    want, healthy = expected_reward(family, env, plain, task_vector(family, tasks, 0), velocity, a)
    assert float(reward) == pytest.approx(want, rel=1e-6, abs=1e-5)
    assert bool(done) == (not healthy)
    if family.startswith("ant"):
        assert plain.d.ncon > 0 and np.abs(plain.d.cfrc_ext).sum() > 0


@pytest.mark.parametrize("robot,env_id", [("cheetah_dir", "HalfCheetah-v5"), ("ant_dir", "Ant-v5"),
                                          ("hopper_params", "Hopper-v5"), ("walker_params", "Walker2d-v5")])
def test_matches_gymnasium_v5(robot, env_id, tmp_path, monkeypatch):
    """Same start, same actions: gymnasium's own env gives the same observations, velocity and ends.

    Ant's contact forces are the documented exception (one substep earlier than gymnasium's), so
    its first 27 observation entries (qpos[2:], qvel) are compared, and the reward without contacts.
    """
    monkeypatch.chdir(tmp_path)  # gymnasium's loader writes MuJoCo's warnings to ./MUJOCO_LOG.TXT
    env, _ = make(robot)
    ones = {"body_mass": np.ones((1, env.model.nbody))}  # unit scales: the plain gymnasium model
    env.reset({"direction": np.ones((1, 1))} if "dir" in robot else ones, 1)
    qpos, qvel = env.get_state()
    gym = gymnasium.make(env_id).unwrapped
    gym.reset(seed=0)
    gym.set_state(qpos[0, 0], qvel[0, 0])
    rng = np.random.default_rng(2)
    k = 27 if robot.startswith("ant") else env.obs_dim
    for _ in range(15):
        a = rng.uniform(-1, 1, env.act_dim)
        obs, reward, done, _, _ = env.step(torch.as_tensor(a).reshape(1, 1, -1))
        g_obs, g_reward, g_term, _, info = gym.step(a)
        np.testing.assert_array_equal(obs[0, 0, :k].numpy(), g_obs[:k].astype(np.float32))
        if robot == "cheetah_dir":
            g_reward = info["x_velocity"] - 0.05 * np.sum(a**2)
        elif robot == "ant_dir":
            contact = 5e-4 * np.sum(np.clip(env._fields["cfrc_ext"][0], -1, 1) ** 2)
            g_reward = info["x_velocity"] + info["reward_survive"] - 0.005 * np.sum(a**2) - contact
        assert float(reward) == pytest.approx(g_reward, rel=1e-6, abs=1e-5)
        assert bool(done) == g_term
        if g_term:
            break


@pytest.mark.parametrize("family", ["cheetah_vel", "ant_goal", "hopper_params"])
def test_batched_stepping_equals_plain_mujoco_one_by_one(family):
    env, dist = make(family)
    n, episodes = 2, 2
    tasks = dist.sample(n, np.random.default_rng(3))
    env.reset(tasks, episodes)
    qpos, qvel = env.get_state()
    models = task_models(env, tasks, n)
    plains = [[Plain(env, models[i], qpos[i, j], qvel[i, j]) for j in range(episodes)] for i in range(n)]
    running = np.ones((n, episodes), dtype=bool)
    rng = np.random.default_rng(4)
    for _ in range(8):
        act = actions(env, rng, n, episodes)
        _, reward, done, _, _ = env.step(act)
        qpos, qvel = env.get_state()
        for i in range(n):
            for j in range(episodes):
                if not running[i, j]:
                    assert done[i, j] and reward[i, j] == 0
                    continue
                p = plains[i][j]
                velocity, a = p.step(act[i, j].numpy())
                np.testing.assert_array_equal(qpos[i, j], p.d.qpos)
                np.testing.assert_array_equal(qvel[i, j], p.d.qvel)
                want, healthy = expected_reward(family, env, p, task_vector(family, tasks, i), velocity, a)
                assert float(reward[i, j]) == pytest.approx(want, rel=1e-6, abs=1e-5)
                assert bool(done[i, j]) == (not healthy)
                running[i, j] = healthy


# Ant-v5's torso (a sphere of radius 0.25) cannot stay below z = 0.2: an Ant ends by leaving the
# range upwards, i.e. tumbling or jumping higher than 1.0.
@pytest.mark.parametrize("family,index,value", [("ant_vel", 2, 1.3), ("ant_dir", 2, 1.1),
                                                ("hopper_params", 2, 0.5), ("walker_params", 1, 0.5)])
def test_unhealthy_episodes_end_and_stay_ended(family, index, value):
    env, dist = make(family)
    env.reset(dist.sample(1, np.random.default_rng(5)), 2)
    qpos = np.tile(env.model.qpos0, (1, 2, 1))
    qpos[0, 0, index] = value  # episode 0 unhealthy, episode 1 upright
    env.set_state(qpos, np.zeros(env.model.nv))
    _, reward, done, _, _ = env.step(torch.zeros(1, 2, env.act_dim))
    assert done.tolist() == [[True, False]]
    frozen = env.get_state()[0][0, 0]
    for _ in range(3):
        _, reward, done, _, _ = env.step(torch.ones(1, 2, env.act_dim))
        assert done[0, 0] and reward[0, 0] == 0
    np.testing.assert_array_equal(env.get_state()[0][0, 0], frozen)  # an ended episode is not simulated


@pytest.mark.parametrize("family", ["hopper_params", "walker_params"])
def test_dynamics_tasks_change_the_dynamics(family):
    env, dist = make(family)
    drawn = dist.sample(2, np.random.default_rng(6))
    tasks = {k: v[[0, 0, 1]] for k, v in drawn.items()}  # tasks 0 and 1 alike, task 2 different
    env.reset(tasks, 1)
    env.set_state(env.model.qpos0 + 0.01, np.zeros(env.model.nv))
    for _ in range(5):
        env.step(torch.full((3, 1, env.act_dim), 0.5))
    qpos = env.get_state()[0][:, 0]
    # equal on MuJoCo 4; MuJoCo 3.3's mj_forward also writes the solver's warm start, which the
    # episodes' different reset states leave slightly different (1e-17 here)
    np.testing.assert_allclose(qpos[0], qpos[1], rtol=0, atol=1e-12)
    assert np.abs(qpos[0] - qpos[2]).max() > 1e-3


def test_task_distributions_ranges_and_seeding():
    rng = np.random.default_rng
    for family, override, low, high in [("cheetah_vel", None, 0, 2), ("cheetah_vel", "tasks=cheetah_vel_wide", 0, 3),
                                        ("ant_vel", None, 0, 3)]:
        dist = instantiate(config(family, *([override] if override else [])).tasks)
        v = dist.sample(2000, rng(0))["velocity"]
        assert v.shape == (2000, 1) and v.min() >= low and v.max() <= high and v.max() > high - 0.05
    d = Directions().sample(200, rng(0))["direction"]
    assert d.shape == (200, 1) and set(np.unique(d)) == {-1.0, 1.0}
    g = Disk(radius=3.0).sample(4000, rng(0))["goal"]
    r2 = np.square(g).sum(axis=1)
    assert g.shape == (4000, 2) and r2.max() <= 9.0 + 1e-5 and abs(r2.mean() - 4.5) < 0.2  # uniform in area
    for family in ("hopper_params", "walker_params"):
        env, dist = make(family)
        s = dist.sample(500, rng(0))
        assert set(s) == {"body_mass", "body_inertia", "dof_damping", "geom_friction"}
        for field, scale in s.items():
            assert scale.shape == (500, *getattr(env.model, field).shape)
            u = np.log(scale) / np.log(1.5)
            assert u.min() >= -3 and u.max() <= 3 and abs(u.mean()) < 0.2
        again = dist.sample(500, rng(0))
        assert all(np.array_equal(s[k], again[k]) for k in s)
        assert not np.array_equal(s["body_mass"], dist.sample(500, rng(1))["body_mass"])
    assert np.array_equal(Disk().sample(5, rng(7))["goal"], Disk().sample(5, rng(7))["goal"])


@pytest.mark.parametrize("make_bad,key", [  # the declared keys (dmrl.keys), checked before anything is built
    (lambda: check_node(Disk, {"radius": -1.0}, "tasks"), "tasks.radius"),
    (lambda: check_node(Directions, {"values": []}, "tasks"), "tasks.values"),
    (lambda: check_node(DynamicsScales, {"xml": "hopper.xml", "base": 0.0}, "tasks"), "tasks.base"),
    (lambda: check_node(DynamicsScales, {"xml": "hopper.xml", "log_scale_limit": -1.0}, "tasks"), "tasks.log_scale_limit"),
    (lambda: check_node(DynamicsScales, {"xml": "hopper.xml", "fields": ["body_pos"]}, "tasks"), "tasks.fields"),
    (lambda: DynamicsScales("nope.xml"), "nope.xml"),
    (lambda: check_node(HalfCheetahVel, {"horizon": 0}, "env"), "env.horizon"),
    (lambda: check_node(HalfCheetahVel, {"ctrl_cost_weight": -1.0}, "env"), "env.ctrl_cost_weight"),
    (lambda: check_node(HalfCheetahVel, {"nthread": 0}, "env"), "env.nthread"),
])
def test_impossible_values_raise_config_errors_naming_the_key(make_bad, key):
    with pytest.raises(ConfigError, match=key):
        make_bad()


def test_horizon_zero_is_rejected_from_the_command_line():
    with pytest.raises(ConfigError, match="env.horizon"):
        validate(config("cheetah_vel", "env.horizon=0"), TRAIN_RULES)


def test_wrong_actions_and_tasks_are_rejected():
    env, dist = make("cheetah_vel")
    env.reset(dist.sample(1, np.random.default_rng(0)), 2)
    with pytest.raises(ValueError, match=r"\(1, 2, 6\)"):
        env.step(torch.zeros(1, 2, 5))
    with pytest.raises(ConfigError, match="velocity"):
        env.reset({"goal": np.zeros((1, 2), dtype=np.float32)}, 2)
    hopper = HopperParams(horizon=10)
    walker_tasks = instantiate(config("walker_params").tasks).sample(1, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="tasks.xml"):
        hopper.reset(walker_tasks, 1)


def test_reset_noise_comes_from_the_seeded_generator():
    env, dist = make("ant_goal")
    tasks = dist.sample(2, np.random.default_rng(0))
    env.seed(11)
    first = env.reset(tasks, 2)
    state = env.state_dict()
    second = env.reset(tasks, 2)
    env.load_state_dict(state)
    assert torch.equal(env.reset(tasks, 2), second) and not torch.equal(first, second)
    env.seed(11)
    assert torch.equal(env.reset(tasks, 2), first)
