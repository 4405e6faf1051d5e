"""MuJoCo locomotion task families (shared/REFERENCES.md) on gymnasium's v5 models.

Each family is a gymnasium v5 robot with a task-dependent reward or task-dependent dynamics,
stepped as a batch by :class:`~dmrl.envs.mujoco_base.MujocoEnv`. Observations, velocities, reset
noise and healthy-termination rules are gymnasium v5's defaults for the robot:

==============  =========================  ==========  ===  ==========================
robot           model (timestep)           frame skip  obs  reset noise qpos / qvel
==============  =========================  ==========  ===  ==========================
HalfCheetah-v5  half_cheetah.xml (0.01 s)  5           17   U[-0.1, 0.1] / 0.1 N(0, 1)
Ant-v5          ant.xml (0.01 s)           5           105  U[-0.1, 0.1] / 0.1 N(0, 1)
Hopper-v5       hopper.xml (0.002 s)       4           11   U[-0.005, 0.005] / same
Walker2d-v5     walker2d_v5.xml (0.002 s)  4           17   U[-0.005, 0.005] / same
==============  =========================  ==========  ===  ==========================

``v_x = (x_after - x_before) / dt`` with ``dt = timestep * frame_skip``; ``x`` is ``qpos[0]``,
except for Ant, whose velocity and position are those of the torso body's ``xpos`` as Ant-v5 reads
it after ``mj_step`` (from the last Runge-Kutta stage of the last substep, close to ``qpos[:2]``). Hopper and Walker2d clip ``qvel`` to [-10, 10] in the
observation; no observation contains the x (Ant: x, y) position.

Ant contact forces. Ant-v5 by default both charges ``5e-4 * ||clip(cfrc_ext, -1, 1)||^2`` and
observes ``clip(cfrc_ext[1:], -1, 1)`` (78 of its 105 numbers), and dmrl keeps both. Gymnasium
computes ``cfrc_ext`` with an extra ``mj_rnePostConstraint`` after ``mj_step``; a batched step has
no hook for that, so the model gets an accelerometer on the torso, which makes MuJoCo run
``mj_rnePostConstraint`` inside every ``mj_forward``. The forces are therefore those at the start
of the step's last substep (0.01 s earlier than gymnasium's, which come from the last
Runge-Kutta stage of that substep): same magnitudes and costs on average, but an individual
clipped entry can differ when a contact starts or ends within that substep. The trajectories,
torso velocity, healthy flag and every other observation entry are exactly gymnasium's.

Rewards (``a``: the action clipped to the actuators' range [-1, 1]):

- ``HalfCheetahVel``: ``-|v_x - v*| - 0.05 ||a||^2``; ``HalfCheetahDir``: ``d v_x - 0.05 ||a||^2``
  (MAML; no termination).
- ``AntVel``: ``-|v_x - v*|``; ``AntDir``: ``d v_x``; ``AntGoal``: ``-||xy - g||_1`` (torso xy
  after the step); each ``+ 1.0 healthy - 0.005 ||a||^2 - contact cost``. The control weight is
  the MAML/rllab one that REFERENCES.md gives (0.005), not Ant-v5's 0.5; the survive bonus is paid
  while healthy (Ant-v5); the episode ends when the torso z leaves [0.2, 1.0] or the state is not
  finite.
- ``HopperParams``, ``Walker2dParams``: gymnasium's ``v_x + 1.0 healthy - 0.001 ||a||^2``, with
  v5's termination (Hopper: z > 0.7, |angle| < 0.2, |qpos[2:], qvel| < 100; Walker2d:
  0.8 < z < 2, |angle| < 1); each task scales the body masses, inertias, dof damping and geom
  frictions of its own model copy (:class:`dmrl.tasks.locomotion.DynamicsScales`).
"""

from __future__ import annotations

import mujoco
import numpy as np

from dmrl.envs.mujoco_base import MujocoEnv, load_model
from dmrl.errors import ConfigError
from dmrl.keys import NON_NEGATIVE
from dmrl.tasks.distributions import Tasks


def _ctrl_cost(weight: float, action: np.ndarray) -> np.ndarray:
    return weight * np.sum(np.square(action), axis=1)


# HalfCheetah ---------------------------------------------------------------------------------


class HalfCheetah(MujocoEnv):
    """HalfCheetah-v5 with a task term in place of the forward reward (no termination)."""

    xml = "half_cheetah.xml"
    frame_skip = 5
    reset_noise_scale = 0.1
    qvel_noise = "normal"
    KEYS = {"ctrl_cost_weight": NON_NEGATIVE}  # (dmrl.keys) and MujocoEnv's

    def __init__(self, horizon: int = 200, ctrl_cost_weight: float = 0.05, device: str = "cpu",
                 nthread: int | None = None) -> None:
        self.ctrl_cost_weight = float(ctrl_cost_weight)
        super().__init__(horizon, device, nthread)

    def observe(self, f):
        return np.concatenate([f["qpos"][:, 1:], f["qvel"]], axis=1)

    def position(self, f):
        return f["qpos"][:, :1]

    def task_reward(self, v_x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reward(self, f, velocity, action):
        reward = self.task_reward(velocity[:, 0]) - _ctrl_cost(self.ctrl_cost_weight, action)
        return reward, np.ones(len(reward), dtype=bool)


class HalfCheetahVel(HalfCheetah):
    """Run at the task's target velocity ``v*`` (MAML section 5.3; PEARL)."""

    task_keys = ("velocity",)

    def task_reward(self, v_x):
        return -np.abs(v_x - self.task["velocity"][:, 0])


class HalfCheetahDir(HalfCheetah):
    """Run forward (``d = +1``) or backward (``d = -1``) as fast as possible (MAML section 5.3)."""

    task_keys = ("direction",)

    def task_reward(self, v_x):
        return self.task["direction"][:, 0] * v_x


# Ant -------------------------------------------------------------------------------------------


def _run_rne_post_constraint(spec: mujoco.MjSpec) -> None:
    """Add an accelerometer on the torso: it makes every ``mj_forward`` fill ``cfrc_ext``."""
    spec.body("torso").add_site(name="dmrl_cfrc_ext")
    spec.add_sensor(name="dmrl_cfrc_ext", type=mujoco.mjtSensor.mjSENS_ACCELEROMETER,
                    objtype=mujoco.mjtObj.mjOBJ_SITE, objname="dmrl_cfrc_ext")


class Ant(MujocoEnv):
    """Ant-v5 with a task term in place of the forward reward; ends when unhealthy."""

    xml = "ant.xml"
    frame_skip = 5
    reset_noise_scale = 0.1
    qvel_noise = "normal"
    outputs = ("xpos", "cfrc_ext")
    healthy_z_range = (0.2, 1.0)  # torso height (m), inclusive
    contact_force_range = (-1.0, 1.0)
    KEYS = {"ctrl_cost_weight": NON_NEGATIVE, "contact_cost_weight": NON_NEGATIVE, "healthy_reward": NON_NEGATIVE}

    def __init__(self, horizon: int = 200, ctrl_cost_weight: float = 0.005, contact_cost_weight: float = 5e-4,
                 healthy_reward: float = 1.0, device: str = "cpu", nthread: int | None = None) -> None:
        self.ctrl_cost_weight = float(ctrl_cost_weight)
        self.contact_cost_weight = float(contact_cost_weight)
        self.healthy_reward = float(healthy_reward)
        super().__init__(horizon, device, nthread)

    def build_model(self):
        return load_model(self.xml, _run_rne_post_constraint)

    def contact_forces(self, f) -> np.ndarray:
        return np.clip(f["cfrc_ext"], *self.contact_force_range)  # [sims, nbody, 6]

    def observe(self, f):
        contact = self.contact_forces(f)[:, 1:]
        return np.concatenate([f["qpos"][:, 2:], f["qvel"], contact.reshape(len(contact), -1)], axis=1)

    def position(self, f):
        return f["xpos"][:, 1, :2]  # the torso (Ant-v5's main_body=1)

    def task_reward(self, f, velocity: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reward(self, f, velocity, action):
        qpos, qvel = f["qpos"], f["qvel"]
        low, high = self.healthy_z_range
        healthy = np.isfinite(qpos).all(axis=1) & np.isfinite(qvel).all(axis=1) & (low <= qpos[:, 2]) & (qpos[:, 2] <= high)
        contact_cost = self.contact_cost_weight * np.sum(np.square(self.contact_forces(f)), axis=(1, 2))
        reward = (self.task_reward(f, velocity) + self.healthy_reward * healthy
                  - _ctrl_cost(self.ctrl_cost_weight, action) - contact_cost)
        return reward, healthy


class AntVel(Ant):
    """Walk forward at the task's target velocity ``v*`` (MAML)."""

    task_keys = ("velocity",)

    def task_reward(self, f, velocity):
        return -np.abs(velocity[:, 0] - self.task["velocity"][:, 0])


class AntDir(Ant):
    """Walk forward (``d = +1``) or backward (``d = -1``) (MAML; PEARL's forward/backward)."""

    task_keys = ("direction",)

    def task_reward(self, f, velocity):
        return self.task["direction"][:, 0] * velocity[:, 0]


class AntGoal(Ant):
    """Walk to the task's goal ``g`` in the plane: ``-||xy - g||_1`` (PEARL)."""

    task_keys = ("goal",)

    def task_reward(self, f, velocity):
        return -np.abs(self.position(f) - self.task["goal"]).sum(axis=1)


# Hopper and Walker2d with randomized dynamics ------------------------------------------------

PARAM_FIELDS = ("body_mass", "body_inertia", "dof_damping", "geom_friction")


class PlanarWalker(MujocoEnv):
    """Hopper-v5/Walker2d-v5's forward reward on per-task dynamics ("rand params": ProMP, PEARL).

    A task is a set of multiplicative scales of ``self.model``'s fields, named by field
    (``tasks["body_mass"]: [N, nbody]`` and so on, any subset of ``PARAM_FIELDS``).
    """

    frame_skip = 4
    reset_noise_scale = 5e-3
    qvel_noise = "uniform"
    KEYS = {"ctrl_cost_weight": NON_NEGATIVE, "healthy_reward": NON_NEGATIVE}  # (dmrl.keys) and MujocoEnv's

    def __init__(self, horizon: int = 200, ctrl_cost_weight: float = 1e-3, healthy_reward: float = 1.0,
                 device: str = "cpu", nthread: int | None = None) -> None:
        self.ctrl_cost_weight = float(ctrl_cost_weight)
        self.healthy_reward = float(healthy_reward)
        super().__init__(horizon, device, nthread)

    def count_tasks(self, tasks: Tasks) -> int:
        fields = [k for k in PARAM_FIELDS if k in tasks]
        if not fields:
            raise ConfigError(f"{type(self).__name__} needs tasks with dynamics scales for some of {list(PARAM_FIELDS)}, "
                              f"got {sorted(tasks)}: use its standard task distribution (tasks=...)")
        for k in fields:
            want = getattr(self.model, k).shape
            if np.shape(tasks[k])[1:] != want:
                raise ConfigError(f"tasks {k} scales have shape {np.shape(tasks[k])[1:]} per task, but {self.xml} "
                                  f"needs {want}: tasks.xml must be the env's model ({self.xml})")
        sizes = {np.shape(tasks[k])[0] for k in fields}
        if len(sizes) != 1:
            raise ValueError(f"task arrays disagree on the number of tasks: {sizes}")
        return sizes.pop()

    def task_models(self, tasks, n):
        return self.scaled_models({k: np.asarray(tasks[k], dtype=np.float64) for k in PARAM_FIELDS if k in tasks}, n)

    def observe(self, f):
        return np.concatenate([f["qpos"][:, 1:], np.clip(f["qvel"], -10.0, 10.0)], axis=1)

    def position(self, f):
        return f["qpos"][:, :1]

    def healthy(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reward(self, f, velocity, action):
        healthy = self.healthy(f["qpos"], f["qvel"])
        reward = velocity[:, 0] + self.healthy_reward * healthy - _ctrl_cost(self.ctrl_cost_weight, action)
        return reward, healthy


class HopperParams(PlanarWalker):
    """Hopper-v5 with randomized dynamics."""

    xml = "hopper.xml"

    def healthy(self, qpos, qvel):
        state = np.concatenate([qpos[:, 2:], qvel], axis=1)  # gymnasium: state_vector()[2:]
        z, angle = qpos[:, 1], qpos[:, 2]
        return ((-100.0 < state) & (state < 100.0)).all(axis=1) & (0.7 < z) & (z < np.inf) & (-0.2 < angle) & (angle < 0.2)


class Walker2dParams(PlanarWalker):
    """Walker2d-v5 with randomized dynamics."""

    xml = "walker2d_v5.xml"

    def healthy(self, qpos, qvel):
        z, angle = qpos[:, 1], qpos[:, 2]
        return (0.8 < z) & (z < 2.0) & (-1.0 < angle) & (angle < 1.0)
