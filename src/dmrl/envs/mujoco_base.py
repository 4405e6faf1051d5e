"""Batched MuJoCo physics on gymnasium's v5 models: every episode of every task in one call.

A :class:`MujocoEnv` holds ``tasks x episodes`` simulations of one gymnasium v5 MJCF model (loaded
from the XML files shipped inside the gymnasium package; no gymnasium env objects, no mujoco-py)
and advances all of them by ``frame_skip`` substeps per policy step on a thread pool that lives as
long as the env. Observations, rewards and terminations are computed with numpy from the stacked
state rows, with no Python loop over simulations.

Engine: ``mujoco.batch.Batch`` rather than ``mujoco.rollout`` (on MuJoCo 3.3, which has no
``mujoco.batch``, a thread pool over ``mj_step`` with the same interface: :mod:`dmrl.envs.physics`). Both run the simulations on a
persistent native thread pool at the same speed (measured on HalfCheetah and Ant, 800 simulations),
but ``rollout`` is stateless by design: every call starts the constraint solver from a zero warm
start (``qacc_warmstart`` is not part of the state it returns), so a policy step made of one
``rollout`` call drifts from gymnasium's continuous ``mj_step`` (1e-6 in ``qpos`` after 100 steps
of HalfCheetah, then chaos amplifies it), and it returns only states and sensor values, not the
derived fields Ant-v5 reads (the torso's ``xpos`` for its velocity, ``cfrc_ext`` for its contact
cost and observation). A ``Batch`` keeps each simulation's whole integration state, warm start
included, between calls (bit-identical to one ``MjData`` stepped with ``mj_step``, at any thread
count), exposes derived fields as ``[sims, ...]`` arrays, runs each task's simulations on that
task's own ``MjModel`` (``set_models``) and steps only the episodes still running.

Reset follows gymnasium v5: ``qpos = qpos0 + U[-s, s]``, ``qvel = 0 + s * N(0, 1)`` (HalfCheetah,
Ant) or ``+ U[-s, s]`` (Hopper, Walker2d), then ``mj_forward``, with the noise drawn from
``self.rng`` (``BatchedEnv.seed``). Actions are clipped to the actuators' ``ctrlrange`` before they
are applied, and the control cost is computed on the clipped action: gymnasium charges the raw
action while MuJoCo clamps the control, which penalizes a Gaussian policy for samples that have no
effect (MAML's rllab setup also clipped first, through its action normalization).
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import gymnasium
import mujoco
import numpy as np
import torch
from torch import Tensor

from dmrl.envs.base import BatchedEnv
from dmrl.envs.physics import engine_name, make_batch
from dmrl.errors import ConfigError
from dmrl.keys import int_at_least, optional
from dmrl.tasks.distributions import Tasks

ASSETS = Path(gymnasium.__file__).resolve().parent / "envs" / "mujoco" / "assets"

# gymnasium's half_cheetah.xml still uses this compiler attribute; MuJoCo's deprecation notice is
# not actionable for a user of the asset (loading with MjModel.from_xml_path would also write it to
# ./MUJOCO_LOG.TXT on every load).
_SILENCED = ("'settotalmass' is deprecated",)


def asset_path(xml: str) -> Path:
    """The path of one of gymnasium's MuJoCo models, e.g. ``half_cheetah.xml``."""
    path = ASSETS / xml
    if not path.is_file():
        known = ", ".join(sorted(p.name for p in ASSETS.glob("*.xml")))
        raise ConfigError(f"no MuJoCo model {xml!r} among gymnasium's assets; one of {known}")
    return path


def load_model(xml: str, edit: Callable[[mujoco.MjSpec], None] | None = None) -> mujoco.MjModel:
    """Compile gymnasium's ``xml`` model, after ``edit(spec)`` if given (e.g. to add a sensor)."""
    path = asset_path(xml)
    with warnings.catch_warnings():  # MjSpec reports compiler warnings as Python warnings
        for text in _SILENCED:
            warnings.filterwarnings("ignore", message=f".*{text}")
        spec = mujoco.MjSpec.from_file(str(path))
        if edit is not None:
            edit(spec)
        model = spec.compile()
    return model


def default_threads() -> int:
    """The CPUs this process may run on (``os.cpu_count()`` ignores affinity masks)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class MujocoEnv(BatchedEnv):
    """``tasks x episodes`` simulations of one gymnasium v5 model, stepped together.

    Subclasses name the model and its gymnasium v5 constants (class attributes) and implement
    :meth:`observe`, :meth:`position` and :meth:`reward`; they may override :meth:`build_model`
    (edit the model once) and :meth:`task_models` (one ``MjModel`` per task, for dynamics
    randomization). Simulation ``i`` is episode ``i % episodes`` of task ``i // episodes``.
    """

    xml: str  # one of gymnasium's assets
    frame_skip: int  # physics substeps per policy step
    reset_noise_scale: float
    qvel_noise: str  # "normal": s * N(0, 1) | "uniform": U[-s, s]
    outputs: tuple[str, ...] = ()  # derived MjData fields the subclass reads, e.g. ("xpos",)
    task_keys: tuple[str, ...] = ()  # keys the env reads from a task batch
    KEYS = {"nthread": optional(int_at_least(1), "one per CPU this process may use")}  # (dmrl.keys) and horizon

    def __init__(self, horizon: int = 200, device: str | torch.device = "cpu", nthread: int | None = None) -> None:
        super().__init__(horizon, device)
        self.nthread = nthread or default_threads()
        self.engine = f"{engine_name()}, {self.nthread} threads"
        self.model = self.build_model()
        self.dt = float(self.model.opt.timestep) * self.frame_skip
        self.act_dim = int(self.model.nu)
        self.ctrl_low = self.model.actuator_ctrlrange[:, 0].copy()
        self.ctrl_high = self.model.actuator_ctrlrange[:, 1].copy()
        self._batch = None  # mujoco.batch.Batch, or dmrl.envs.physics.ThreadPoolBatch on MuJoCo 3.3
        self._fields: dict[str, np.ndarray] = {}
        self.shape: tuple[int, int] | None = None  # (tasks, episodes) of the current reset
        self.done: np.ndarray | None = None  # [sims] bool
        self.task: dict[str, np.ndarray] = {}  # per simulation: [sims, ...]
        self.obs_dim = int(self.observe(self._probe()).shape[1])

    # hooks ---------------------------------------------------------------------------------------

    def build_model(self) -> mujoco.MjModel:
        return load_model(self.xml)

    def task_models(self, tasks: Tasks, n: int) -> Sequence[mujoco.MjModel] | None:
        """One model per task, or None when every task runs on ``self.model``."""
        return None

    def observe(self, f: dict[str, np.ndarray]) -> np.ndarray:
        """Observations ``[sims, obs_dim]`` from the state and output fields ``f``."""
        raise NotImplementedError

    def position(self, f: dict[str, np.ndarray]) -> np.ndarray:
        """The position whose finite difference over ``dt`` is the velocity: ``[sims, k]``."""
        raise NotImplementedError

    def reward(self, f: dict[str, np.ndarray], velocity: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(reward [sims], healthy [sims] bool)`` after a step; unhealthy ends the episode."""
        raise NotImplementedError

    # machinery -----------------------------------------------------------------------------------

    def _probe(self) -> dict[str, np.ndarray]:
        """Zero-filled fields of one simulation, to size the observation."""
        data = mujoco.MjData(self.model)
        return {name: np.zeros((1, *np.shape(getattr(data, name)))) for name in ("qpos", "qvel", *self.outputs)}

    def _sims(self, nsim: int):
        if self._batch is None or self._batch.nsim != nsim:
            self._batch = make_batch(self.model, nsim, self.nthread)
            # outputs must be bound before the first call to be filled by it
            self._fields = {name: self._batch.bind(name) for name in ("qpos", "qvel", "ctrl", *self.outputs)}
        return self._batch

    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The actuators' ``ctrlrange`` (``step`` clips actions to it)."""
        return self.ctrl_low.copy(), self.ctrl_high.copy()

    def count_tasks(self, tasks: Tasks) -> int:
        missing = [k for k in self.task_keys if k not in tasks]
        if missing:
            raise ConfigError(f"{type(self).__name__} needs tasks with keys {list(self.task_keys)}, got {sorted(tasks)}: "
                              f"use its standard task distribution (tasks=...) or set tasks.key")
        sizes = {np.shape(tasks[k])[0] for k in self.task_keys}
        if len(sizes) != 1:
            raise ValueError(f"task arrays disagree on the number of tasks: {sizes}")
        return sizes.pop()

    def _reset(self, tasks: Tasks, episodes: int) -> Tensor:
        if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
            raise ValueError(f"episodes must be an integer >= 1, got {episodes!r}")
        n, episodes = self.count_tasks(tasks), int(episodes)
        nsim = n * episodes
        self.task = {k: np.repeat(np.asarray(tasks[k], dtype=np.float64).reshape(n, -1), episodes, axis=0)
                     for k in self.task_keys}
        models = self.task_models(tasks, n)
        b = self._sims(nsim)
        b.set_models(None if models is None else [m for m in models for _ in range(episodes)])
        b.reset(stage=mujoco.mjtStage.mjSTAGE_NONE)
        m, s, rng = self.model, self.reset_noise_scale, self.rng
        qpos = m.qpos0 + rng.uniform(-s, s, size=(nsim, m.nq))
        if self.qvel_noise == "normal":
            qvel = s * rng.standard_normal((nsim, m.nv))
        else:
            qvel = rng.uniform(-s, s, size=(nsim, m.nv))
        self._fields["qpos"][:] = qpos
        self._fields["qvel"][:] = qvel
        b.forward()  # gymnasium's set_state: mj_forward at the initial state
        self.shape = (n, episodes)
        self.done = np.zeros(nsim, dtype=bool)
        return self._tensor(self.observe(self._fields)).reshape(n, episodes, self.obs_dim)

    def _step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, dict]:
        n, episodes = self._require_reset()
        self.check_actions(actions, (n, episodes, self.act_dim))
        action = actions.detach().to("cpu", torch.float64).numpy().reshape(n * episodes, self.act_dim)
        action = np.clip(action, self.ctrl_low, self.ctrl_high)
        running = ~self.done
        f = self._fields
        before = self.position(f).copy()
        f["ctrl"][:] = action
        if running.all():
            self._batch.step(nstep=self.frame_skip)
        elif running.any():
            self._batch.step(running, nstep=self.frame_skip)
        velocity = (self.position(f) - before) / self.dt
        reward, healthy = self.reward(f, velocity, action)
        reward = np.where(running, reward, 0.0)
        self.done = self.done | ~healthy
        obs = self._tensor(self.observe(f)).reshape(n, episodes, self.obs_dim)
        done = torch.from_numpy(self.done.reshape(n, episodes).copy()).to(self.device)
        return obs, self._tensor(reward).reshape(n, episodes), done, {}

    def get_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of every simulation's ``qpos [N, B, nq]`` and ``qvel [N, B, nv]``."""
        n, episodes = self._require_reset()
        f = self._fields
        return f["qpos"].reshape(n, episodes, -1).copy(), f["qvel"].reshape(n, episodes, -1).copy()

    def set_state(self, qpos: np.ndarray, qvel: np.ndarray) -> Tensor:
        """Start every episode from the given state (broadcast to ``[N, B, nq]``, ``[N, B, nv]``).

        As gymnasium's ``set_state``: the state is written and ``mj_forward`` run; the tasks and
        models of the last ``reset`` stay, and every episode counts as running again.
        """
        n, episodes = self._require_reset()
        m = self.model
        self._fields["qpos"][:] = np.broadcast_to(qpos, (n, episodes, m.nq)).reshape(n * episodes, m.nq)
        self._fields["qvel"][:] = np.broadcast_to(qvel, (n, episodes, m.nv)).reshape(n * episodes, m.nv)
        self._batch.forward()
        self.done = np.zeros(n * episodes, dtype=bool)
        return self._tensor(self.observe(self._fields)).reshape(n, episodes, self.obs_dim)

    def _require_reset(self) -> tuple[int, int]:
        if self.shape is None:
            raise RuntimeError("reset() must come first")
        return self.shape

    # helpers for subclasses --------------------------------------------------------------------

    def scaled_models(self, scales: dict[str, np.ndarray], n: int) -> list[mujoco.MjModel]:
        """Per-task copies of ``self.model`` with ``field *= scales[field][i]``, constants recomputed.

        ``mj_setConst`` keeps the quantities MuJoCo derives from masses and inertias at compile
        time (subtree masses, inverse weights that scale constraint softness, mean inertia) those
        of the scaled model rather than of the original one.
        """
        data = mujoco.MjData(self.model)
        models = []
        for i in range(n):
            m = copy.copy(self.model)
            for name, scale in scales.items():
                base = getattr(self.model, name)
                getattr(m, name)[...] = base * scale[i]
            mujoco.mj_setConst(m, data)
            models.append(m)
        return models
