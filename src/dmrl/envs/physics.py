"""Batched MuJoCo stepping on any supported MuJoCo: ``mujoco.batch`` where it exists, else a thread pool.

``mujoco.batch.Batch`` (MuJoCo 4) keeps one simulation per episode on a persistent native thread
pool and exposes every field as a live ``[sims, ...]`` array (:mod:`dmrl.envs.mujoco_base`).
MuJoCo 3.3, which Meta-World pins, has no ``mujoco.batch``; :class:`ThreadPoolBatch` offers the
part of its interface dmrl uses (``bind``, ``set_models``, ``reset``, ``forward``, ``step`` with
an optional subset) over one ``MjData`` per simulation, stepped by ``mj_step`` on a persistent
pool of Python threads, one contiguous chunk of simulations each (MuJoCo's functions release the
GIL, so the chunks' physics runs in parallel; only the copies between the stacked arrays and each
``MjData`` hold it). Both are plain ``mj_step`` on a continuing ``MjData``, warm start included,
so the two engines give the same trajectories (``tests/test_physics.py``).

:func:`make_batch` picks the engine; :func:`engine_name` names it for the run's log.
``DMRL_PHYSICS=pool`` selects the thread pool on MuJoCo 4 too (to compare the two; ``auto``, the
default, takes ``mujoco.batch`` where it exists).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import mujoco
import numpy as np

try:
    from mujoco import batch as _mjbatch
except ImportError:  # MuJoCo < 4
    _mjbatch = None

# the state a caller writes through a bound array, pushed into each MjData before every call;
# every other bound field is an output, copied out after every call
_INPUTS = ("qpos", "qvel", "act", "ctrl", "qacc_warmstart", "mocap_pos", "mocap_quat", "qfrc_applied", "xfrc_applied")


def _use_pool() -> bool:
    choice = os.environ.get("DMRL_PHYSICS", "auto")
    if choice not in ("auto", "pool"):
        from dmrl.errors import ConfigError
        raise ConfigError(f"DMRL_PHYSICS={choice!r}: one of auto (mujoco.batch where it exists), pool (the thread pool)")
    return _mjbatch is None or choice == "pool"


def engine_name() -> str:
    """The engine :func:`make_batch` picks now, in words, with MuJoCo's version."""
    if not _use_pool():
        return f"mujoco.batch (MuJoCo {mujoco.__version__})"
    why = "no mujoco.batch" if _mjbatch is None else "DMRL_PHYSICS=pool"
    return f"a thread pool over mj_step (MuJoCo {mujoco.__version__}, {why})"


class ThreadPoolBatch:
    """``nsim`` simulations of ``model`` on ``nthread`` Python threads: ``mujoco.batch.Batch``'s calls dmrl makes."""

    def __init__(self, model: mujoco.MjModel, nsim: int, nthread: int = 1) -> None:
        self.nsim = int(nsim)
        self.model = model
        self._models: list[mujoco.MjModel] = [model] * self.nsim
        self._data = [mujoco.MjData(model) for _ in range(self.nsim)]
        self._arrays: dict[str, np.ndarray] = {}
        threads = max(1, min(int(nthread), self.nsim))
        bounds = np.linspace(0, self.nsim, threads + 1).astype(int)
        self._chunks = [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="dmrl-physics") if threads > 1 else None

    def __del__(self) -> None:
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown(wait=False)

    def bind(self, name: str) -> np.ndarray:
        """A ``[nsim, ...]`` array of MjData field ``name`` (state fields: written back before every call)."""
        if name not in self._arrays:
            self._arrays[name] = np.stack([np.array(getattr(d, name), dtype=np.float64) for d in self._data])
        return self._arrays[name]

    def set_models(self, models: Sequence[mujoco.MjModel] | mujoco.MjModel | None) -> None:
        if models is None or isinstance(models, mujoco.MjModel):
            self._models = [models or self.model] * self.nsim
        else:
            if len(models) != self.nsim:
                raise ValueError(f"set_models needs {self.nsim} models, got {len(models)}")
            self._models = list(models)

    def reset(self, ids=None, stage: int = mujoco.mjtStage.mjSTAGE_ACC) -> None:
        def one(i: int) -> None:
            mujoco.mj_resetData(self._models[i], self._data[i])
            if stage != mujoco.mjtStage.mjSTAGE_NONE:
                mujoco.mj_forward(self._models[i], self._data[i])
        self._run(ids, one, push=False)

    def forward(self, ids=None) -> None:
        self._run(ids, lambda i: mujoco.mj_forward(self._models[i], self._data[i]))

    def step(self, ids=None, nstep: int = 1) -> None:
        self._run(ids, lambda i: mujoco.mj_step(self._models[i], self._data[i], nstep))

    def _run(self, ids, call, push: bool = True) -> None:
        """``call(i)`` for the chosen simulations (None: all; a bool mask or indices), one chunk per thread."""
        chosen = None if ids is None else np.flatnonzero(ids) if np.asarray(ids).dtype == bool else np.asarray(ids)
        inputs = [(name, a) for name, a in self._arrays.items() if name in _INPUTS] if push else []
        arrays = list(self._arrays.items())

        def chunk(idx: np.ndarray) -> None:
            if chosen is not None:
                idx = idx[np.isin(idx, chosen)]
            for i in idx:
                d = self._data[i]
                for name, a in inputs:
                    getattr(d, name)[...] = a[i]
                call(i)
                for name, a in arrays:
                    a[i] = getattr(d, name)

        if self._pool is None:
            for c in self._chunks:
                chunk(c)
        else:
            for future in [self._pool.submit(chunk, c) for c in self._chunks]:
                future.result()


def make_batch(model: mujoco.MjModel, nsim: int, nthread: int):
    """``mujoco.batch.Batch`` where MuJoCo has it (unless ``DMRL_PHYSICS=pool``), else :class:`ThreadPoolBatch`."""
    if not _use_pool():
        return _mjbatch.Batch(model, nsim=nsim, nthread=nthread)
    return ThreadPoolBatch(model, nsim, nthread)
