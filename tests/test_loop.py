"""The training loop: checkpoints, pruning, atomic writes, and stopping on non-finite values."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hydra import compose, initialize_config_dir

from dmrl.build import build
from dmrl.checkpoint import load_checkpoint, save_checkpoint
from dmrl.config import CONF_DIR
from dmrl.errors import CheckpointError, NonFiniteError
from dmrl.loop import restore, train


def small_parts(extra=()):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=["experiment=smoke", "device=cpu", *extra])
    return build(cfg)


def test_periodic_checkpoints_are_pruned(tmp_path):
    parts = small_parts()
    train(parts, iterations=5, run_dir=tmp_path, checkpoint_every=1, checkpoint_keep=2, tensorboard=False, progress=False)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["iter_000004.pt", "iter_000005.pt", "last.pt"]
    state = load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert state["iteration"] == 5 and state["env_steps"] > 0
    assert {"python", "numpy", "torch"} <= set(state["rng"]) and "task_rng" in state["algo"]


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    parts = small_parts()
    real_step = parts.algo.meta_step
    calls = {"n": 0}

    def step():
        calls["n"] += 1
        out = real_step()
        if calls["n"] == 3:
            with torch.no_grad():
                parts.policy.log_std.fill_(float("nan"))
            out["meta_optim/loss_before"] = math.nan
        return out

    parts.algo.meta_step = step
    with pytest.raises(NonFiniteError, match="iteration 3"):
        train(parts, iterations=5, run_dir=tmp_path, checkpoint_every=1, checkpoint_keep=5, tensorboard=False, progress=False)
    state = load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert state["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in state["algo"]["policy"].values())
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["iteration"] for x in lines] == [1, 2]
    fresh = small_parts()
    assert restore(fresh, state) == (2, state["env_steps"])


def test_atomic_save_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"config": "a: 1", "iteration": 1, "env_steps": 1, "algo": {}, "rng": {}})
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, {"config": "a: 2", "iteration": 2, "env_steps": 2, "algo": {}, "rng": {}})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind
    assert load_checkpoint(path)["iteration"] == 1


def test_incomplete_checkpoint_is_reported(tmp_path):
    path = tmp_path / "x.pt"
    save_checkpoint(path, {"config": "a: 1"})
    with pytest.raises(CheckpointError, match="missing 'iteration'"):
        load_checkpoint(path)


def test_same_seed_same_run_different_seed_different_run(tmp_path):
    runs = []
    for seed, d in ((0, "a"), (0, "b"), (1, "c")):
        parts = small_parts([f"seed={seed}"])
        runs.append(train(parts, iterations=2, run_dir=tmp_path / d, checkpoint_every=5, checkpoint_keep=1,
                          tensorboard=False, progress=False))
    strip = lambda r: {k: v for k, v in r.items() if not k.startswith("time/")}  # noqa: E731
    assert strip(runs[0]) == strip(runs[1])
    assert strip(runs[0]) != strip(runs[2])


def test_a_torn_last_metrics_line_is_dropped(tmp_path):
    from dmrl.loggers.run_logger import read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"iteration": 1}\n{"iteration": 2}\n{"iterat')
    assert read_metrics(path) == [{"iteration": 1}, {"iteration": 2}]
    path.write_text('{"iteration": 1}\n{"itera\n{"iteration": 3}\n')
    with pytest.raises(ValueError):
        read_metrics(path)  # damage before the last line is not silently skipped
