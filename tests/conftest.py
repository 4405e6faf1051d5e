"""Shared fixtures: tiny MAML problems built by hand and the real configs composed by Hydra."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dmrl.algos.maml import MAML
from dmrl.baselines.linear import LinearFeatureBaseline
from dmrl.envs.point_nav import PointNav
from dmrl.optim.trpo import TRPO
from dmrl.policies.gaussian_mlp import GaussianMLPPolicy
from dmrl.samplers.batched import BatchedSampler
from dmrl.tasks.distributions import UniformBox, task_rng

BIN = Path(sys.executable).parent
# `make test` runs the suite in one pytest-xdist worker per core: one torch thread each, for the
# tests and for the console scripts they start (two OpenMP pools spinning on one core slow both)
XDIST = bool(os.environ.get("PYTEST_XDIST_WORKER"))
if XDIST:
    torch.set_num_threads(1)


def make_maml(meta_batch=3, episodes=4, horizon=8, hidden=(8, 8), activation="tanh", inner_steps=1,
              first_order=False, seed=0, **kw) -> MAML:
    torch.manual_seed(seed)
    env = PointNav(horizon=horizon)
    policy = GaussianMLPPolicy(2, 2, hidden, activation)
    sampler = BatchedSampler(env, policy, episodes, seed=seed)
    return MAML(policy, LinearFeatureBaseline(), sampler, TRPO(**kw), UniformBox("goal", -0.5, 0.5, 2),
                task_rng(seed, "train"), meta_batch_size=meta_batch, fast_batch_size=episodes,
                inner_steps=inner_steps, first_order=first_order)


@pytest.fixture
def float64():
    """Tests that compare two exact computations run in float64, where round-off stays far below
    any difference that would matter."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _cli_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("HYDRA_FULL_ERROR", None)
    if XDIST:
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


@pytest.fixture
def cli_env(tmp_path):
    """Environment for running the console scripts as a user would, in a scratch directory."""
    return _cli_env()


def run_together(cmds: list[list[str]], cwd: Path, env: dict) -> list[subprocess.CompletedProcess]:
    """Run independent console-script calls (each refused or finished on its own) as many at a time as
    there are CPUs, one torch thread each: a test of many one-line refusals waits on interpreter
    start-up, not on work.  # one CompletedProcess per command, in order"""
    env = dict(env, OMP_NUM_THREADS="1")
    done: list[subprocess.CompletedProcess] = []
    width = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    for start in range(0, len(cmds), width):
        procs = [(cmd, subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
                 for cmd in cmds[start:start + width]]
        for cmd, proc in procs:
            out, err = proc.communicate(timeout=300)
            done.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    return done


@pytest.fixture(scope="module")
def cli_env_module():
    """The same for a module-scoped fixture (a reference run shared by a module's slow tests)."""
    return _cli_env()


def resume_equals_uninterrupted(make_parts, tmp_path, iterations: int = 3, cut: int = 1) -> tuple[dict, dict]:
    """Train ``iterations`` meta-iterations in one go, and ``cut`` then a resume from that point's
    checkpoint payload up to ``iterations``; assert that both wrote the same metrics (time aside)
    and return both learners' states for the caller's own checks."""
    import json

    from dmrl.checkpoint import load_checkpoint
    from dmrl.loop import restore, train

    kw = dict(checkpoint_every=10, checkpoint_keep=1, tensorboard=False, progress=False)
    full = make_parts()
    train(full, iterations=iterations, run_dir=tmp_path / "full", **kw)
    part = make_parts()
    train(part, iterations=cut, run_dir=tmp_path / "part", **kw)
    last = tmp_path / "part/checkpoints/last.pt"  # the files on disk (and any buffers beside them)
    resumed = make_parts()
    start = restore(resumed, load_checkpoint(last), last)
    train(resumed, iterations=iterations, run_dir=tmp_path / "part", start=start, **kw)

    def lines(d):
        return [{k: v for k, v in json.loads(x).items() if not k.startswith("time/")}
                for x in (d / "metrics.jsonl").read_text().splitlines()]

    assert len(lines(tmp_path / "part")) == iterations and lines(tmp_path / "part") == lines(tmp_path / "full")
    return full.algo.state_dict(), resumed.algo.state_dict()
