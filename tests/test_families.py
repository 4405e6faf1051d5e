"""Every task family runs through the spine: 2-iteration MAML-TRPO and RL²-PPO runs with tiny batches."""

from __future__ import annotations

import math

import pytest
import torch
from hydra import compose, initialize_config_dir

from dmrl.build import build
from dmrl.config import CONF_DIR
from dmrl.loop import train

FAMILIES = ["point_nav", "cheetah_vel", "cheetah_dir", "ant_vel", "ant_dir", "ant_goal", "hopper_params", "walker_params"]
DISCRETE = ["bandit", "tabular_mdp"]


def tiny(env: str, device: str = "cpu", algo: str = "maml"):
    if algo == "maml":
        sizes = ["algo.fast_batch_size=2", "algo.policy.hidden_sizes=[16]"]
    else:
        sizes = ["algo.trials_per_task=2", "algo.episodes_per_trial=2", "algo.policy.hidden_size=16"]
    horizon = [] if env == "bandit" else ["env.horizon=10"]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=[
            f"env={env}", f"algo={algo}", f"device={device}", "iterations=2", "algo.meta_batch_size=2", *sizes,
            *horizon])
    return build(cfg)


@pytest.mark.parametrize("env, algo", [(e, "maml") for e in FAMILIES] + [(e, "rl2") for e in FAMILIES + DISCRETE])
def test_two_iterations_per_family(env, algo, tmp_path):
    parts = tiny(env, algo=algo)
    record = train(parts, iterations=2, run_dir=tmp_path, checkpoint_every=1, checkpoint_keep=1,
                   tensorboard=False, progress=False)
    assert record["iteration"] == 2 and record["env_steps"] > 0
    assert math.isfinite(record["meta_train/return_pre_adapt"]) and math.isfinite(record["meta_train/return_post_adapt"])
    assert (tmp_path / "checkpoints/last.pt").is_file()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("env, algo", [("point_nav", "maml"), ("cheetah_vel", "maml"), ("bandit", "rl2"),
                                       ("cheetah_vel", "rl2")])
def test_cuda_learning_with_cpu_physics(env, algo, tmp_path):
    parts = tiny(env, device="cuda", algo=algo)
    assert next(parts.policy.parameters()).is_cuda
    record = train(parts, iterations=2, run_dir=tmp_path, checkpoint_every=1, checkpoint_keep=1,
                   tensorboard=False, progress=False)
    assert math.isfinite(record["meta_train/return_post_adapt"])
