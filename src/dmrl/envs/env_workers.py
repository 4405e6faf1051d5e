"""Meta-World env instances stepped in batches, in this process or in worker processes.

A :class:`EnvGroup` owns Meta-World env instances (re-used between batches, one per episode) and
steps a batch of them with one call: the loop over episodes runs where the instances live. With
``workers > 1``, :class:`EnvWorkers` starts that many processes (forked where the platform can: the
benchmark already built, no re-import; they run no torch, so the parent's thread pools do not
matter to them; ``spawn`` elsewhere), gives each a contiguous share of the episodes, and exchanges one message per
worker per policy step (actions in; observations, rewards and success flags out), so the Python of
Meta-World's step runs on every core. An episode's outcome depends only on its task, its reset
seed and its actions, not on which worker or instance runs it.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
from collections import defaultdict

import numpy as np

Sim = tuple[int, int, int]  # (split: 0 train / 1 test, index in the split, reset seed)


class EnvGroup:
    """Env instances of one benchmark in this process; ``reset(sims)`` then ``step(actions)``."""

    def __init__(self, bench_args: tuple, reward_version: str) -> None:
        from dmrl.envs.metaworld import all_classes, load_benchmark, split_tasks

        bench = load_benchmark(*bench_args)
        self.tasks = split_tasks(bench)  # (train, test): a sim's split indexes it
        self.classes = all_classes(bench)
        self.reward_version = reward_version
        self.free: dict[str, list] = defaultdict(list)  # instances per class name
        self.active: list = []

    def reset(self, sims: list[Sim]) -> np.ndarray:
        """Start one episode per ``(split, index, seed)``.  # obs [len(sims), 39]"""
        for env in self.active:
            self.free[env.dmrl_name].append(env)
        self.active, obs = [], []
        for split, index, seed in sims:
            task = self.tasks[split][index]
            pool = self.free[task.env_name]
            if pool:
                env = pool.pop()
            else:
                env = self.classes[task.env_name](reward_function_version=self.reward_version)
                env.dmrl_name = task.env_name
            env.set_task(task)
            o, _ = env.reset(seed=seed)
            self.active.append(env)
            obs.append(o)
        return np.asarray(obs, dtype=np.float64).reshape(len(sims), 39)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One step of every active episode.  # obs [n, 39], reward [n], success [n] bool"""
        n = len(self.active)
        obs, reward, success = np.empty((n, 39)), np.empty(n), np.zeros(n, dtype=bool)
        for k, env in enumerate(self.active):
            o, r, _, _, info = env.step(actions[k])
            obs[k], reward[k], success[k] = o, r, bool(info["success"])
        return obs, reward, success

    def close(self) -> None:
        for env in [*self.active, *(e for pool in self.free.values() for e in pool)]:
            env.close()
        self.active, self.free = [], defaultdict(list)


def _serve(conn, bench_args: tuple, reward_version: str) -> None:
    """A worker process: an :class:`EnvGroup` driven by messages ``(command, payload)``."""
    # a forked worker inherits the run's handlers: it is stopped by its parent (close, or the
    # parent's exit), and Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        group = EnvGroup(bench_args, reward_version)
        conn.send(("ready", None))
    except BaseException as e:  # noqa: BLE001  (reported to the parent, which raises it)
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    while True:
        command, payload = conn.recv()
        if command == "close":
            group.close()
            conn.close()
            return
        try:
            conn.send(("ok", group.reset(payload) if command == "reset" else group.step(payload)))
        except BaseException as e:  # noqa: BLE001
            conn.send(("error", f"{type(e).__name__}: {e}"))


class EnvWorkers:
    """``workers`` groups: this process's own (``workers == 1``) or that many worker processes."""

    def __init__(self, workers: int, bench_args: tuple, reward_version: str) -> None:
        self.n = int(workers)
        self.local = EnvGroup(bench_args, reward_version) if self.n == 1 else None
        self.conns, self.procs, self.cuts = [], [], np.zeros(1, dtype=int)
        if self.local is None:
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            for _ in range(self.n):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(child, bench_args, reward_version), daemon=True)
                proc.start()
                child.close()
                self.conns.append(parent)
                self.procs.append(proc)
            for conn in self.conns:
                self._receive(conn)

    def describe(self) -> str:
        return "in this process" if self.local is not None else f"{self.n} worker processes"

    def _receive(self, conn):
        try:
            status, payload = conn.recv()
        except EOFError:
            raise RuntimeError("a Meta-World worker process died (see its output above)") from None
        if status == "error":
            raise RuntimeError(f"a Meta-World worker process failed: {payload}")
        return payload

    def _cuts(self, n: int) -> np.ndarray:
        """Where the contiguous shares of ``n`` simulations start and end, one per group.  # [groups + 1]"""
        return np.linspace(0, n, self.n + 1).astype(int)

    def chunks(self, sims: list[Sim]) -> list[list[Sim]]:
        """The contiguous share of ``sims`` each group steps."""
        cuts = self._cuts(len(sims))
        return [sims[cuts[k]:cuts[k + 1]] for k in range(self.n)]

    def reset(self, sims: list[Sim]) -> np.ndarray:
        if self.local is not None:
            return self.local.reset(sims)
        self.cuts = self._cuts(len(sims))
        for conn, chunk in zip(self.conns, self.chunks(sims)):
            conn.send(("reset", chunk))
        return np.concatenate([self._receive(conn) for conn in self.conns])

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.local is not None:
            return self.local.step(actions)
        cuts = self.cuts
        for k, conn in enumerate(self.conns):
            conn.send(("step", actions[cuts[k]:cuts[k + 1]]))
        parts = [self._receive(conn) for conn in self.conns]
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))

    def close(self) -> None:
        if self.local is not None:
            self.local.close()
        for conn, proc in zip(self.conns, self.procs):
            try:
                conn.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        self.conns, self.procs = [], []

    def __del__(self) -> None:
        if getattr(self, "procs", None):
            self.close()
