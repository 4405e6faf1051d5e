"""env=metaworld: the benchmark's own tasks and envs through the learner contract.

Run in the Meta-World environment (``make test-metaworld``: .venv-mw, mujoco 3.3.0); in the main
environment only the missing-extra case runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dmrl.errors import ConfigError

HAS_METAWORLD = importlib.util.find_spec("metaworld") is not None
needs_metaworld = pytest.mark.skipif(not HAS_METAWORLD, reason="needs Meta-World: make install-metaworld")
BIN = Path(sys.executable).parent


def cli(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def test_missing_extra_is_one_line(monkeypatch):
    from dmrl.envs import metaworld as mw

    monkeypatch.setattr(mw.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"env=metaworld needs Meta-World: make install-metaworld"):
        mw.require_metaworld()


@pytest.mark.skipif(HAS_METAWORLD, reason="checks the message of an environment without Meta-World")
def test_missing_extra_from_the_command_line(tmp_path):
    proc = cli(["dmrl-train", "env=metaworld", "hydra.run.dir=run"], tmp_path, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "make install-metaworld" in lines[0], proc.stderr


def make(*overrides: str):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from dmrl.config import CONF_DIR

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=["env=metaworld", "device=cpu", *overrides])
    return instantiate(cfg.env, device="cpu"), instantiate(cfg.tasks)


@needs_metaworld
@pytest.mark.parametrize("bench,train,test,train_classes,test_classes", [("ML1", 50, 50, 1, 1), ("ML10", 500, 250, 10, 5)])
def test_pools_are_the_benchmarks_splits(bench, train, test, train_classes, test_classes):
    import metaworld

    env, pool = make(f"env.benchmark={bench}", "env.workers=1")
    assert (pool.size("train"), pool.size("test")) == (train, test)
    assert len(set(pool.names["train"])) == train_classes and len(set(pool.names["test"])) == test_classes
    if bench == "ML10":  # held-out classes: disjoint from the train classes
        assert not set(pool.names["train"]) & set(pool.names["test"])
    # disjoint splits: no test task has a train task's data (ML1: other goals of the same class)
    assert not {bytes(d) for d in pool.digests["train"]} & {bytes(d) for d in pool.digests["test"]}
    # the indices are the benchmark's own lists
    reference = getattr(metaworld, bench)(*(["reach-v3"] if bench == "ML1" else []), seed=0)
    tasks = pool.sample(7, np.random.default_rng(0), split="test")
    names = env.task_groups(tasks)
    assert names == [reference.test_tasks[i].env_name for _, i in tasks["task"]]
    assert all(s == 1 for s, _ in tasks["task"])
    env.close()


@needs_metaworld
def test_task_indices_are_stable_across_processes_and_round_trip_a_checkpoint():
    from dmrl.tasks.metaworld import MetaWorldTasks

    pool = MetaWorldTasks("ML1", "reach-v3", seed=3)
    code = ("from dmrl.tasks.metaworld import MetaWorldTasks; import sys;"
            "p = MetaWorldTasks('ML1', 'reach-v3', seed=3); sys.stdout.write(p.digests['test'].tobytes().hex())")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True).stdout
    assert other == pool.digests["test"].tobytes().hex()
    state = pool.state_dict()
    again = MetaWorldTasks("ML1", "reach-v3", seed=3)
    again.load_state_dict(state)
    np.testing.assert_array_equal(again.splits["test"]["task"], pool.splits["test"]["task"])
    with pytest.raises(ValueError, match="Meta-World train tasks differ"):
        MetaWorldTasks("ML1", "reach-v3", seed=4).load_state_dict(state)  # other goals


@needs_metaworld
def test_episodes_do_not_depend_on_the_workers_and_report_success():
    """Two worker processes give the episodes one process gives; the step reports success."""
    out = {}
    for workers in (1, 2):
        env, pool = make("env.horizon=40", f"env.workers={workers}")
        env.seed(0)
        tasks = pool.sample(3, np.random.default_rng(1))
        gen = torch.Generator().manual_seed(2)
        obs, rewards, success = [env.reset(tasks, 2)], [], []
        for _ in range(40):
            # a hand that moves towards the goal succeeds on reach; the observation's last 3 values are
            # hidden (zeros) in the ML setting, so push each coordinate at random but strongly
            o, r, terminated, truncated, info = env.step(torch.rand((3, 2, 4), generator=gen) * 2 - 1)
            obs.append(o), rewards.append(r), success.append(info["success"])
            assert not terminated.any()
        assert truncated.all()  # the horizon ends every episode, never a terminal state
        out[workers] = torch.stack(obs), torch.stack(rewards), torch.stack(success)
        env.close()
    for a, b in zip(out[1], out[2]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert out[1][0].shape == (41, 3, 2, 39) and out[1][2].dtype == torch.bool
    assert torch.isfinite(out[1][1]).all() and (out[1][0][0, :, :, -3:] == 0).all()  # the goal is hidden


@needs_metaworld
def test_success_is_any_step_and_reaches_the_metrics():
    from dmrl.samplers.batched import roll_out

    env, pool = make("env.horizon=30", "env.workers=1")
    env.seed(0)
    tasks = pool.sample(2, np.random.default_rng(0))
    ep = roll_out(env, tasks, 2, lambda obs: torch.zeros(*obs.shape[:2], 4))
    assert ep.success is not None and ep.success.shape == (30, 2, 2)
    # success of an episode: any of its steps (a hand held still at its start reaches no goal)
    torch.testing.assert_close(ep.task_success, ep.success.any(0).float().mean(-1))
    env.close()


@needs_metaworld
@pytest.mark.parametrize("algo,sizes", [
    ("maml", ["algo.meta_batch_size=2", "algo.fast_batch_size=2"]),
    ("promp", ["algo.meta_batch_size=2", "algo.fast_batch_size=2"]),
    ("meta_sgd", ["algo.meta_batch_size=2", "algo.fast_batch_size=2"]),
    ("multitask", ["algo.meta_batch_size=2", "algo.fast_batch_size=2"]),
    ("rl2", ["algo.meta_batch_size=2", "algo.trials_per_task=2", "policy.hidden_size=8"]),
    ("pearl", ["algo.num_train_steps=3", "algo.num_initial_steps=20", "algo.num_steps_prior=10",
               "algo.num_extra_rl_steps_posterior=10", "algo.num_tasks_sample=2", "algo.meta_batch=2",
               "algo.batch_size=8", "algo.context_batch=4", "algo.net_size=8", "policy.hidden_sizes=[8]"]),
])
def test_every_learner_trains_and_evaluates_on_ml1_reach(algo, sizes, tmp_path):
    tiny = ["env=metaworld", f"algo={algo}", "env.horizon=10", "env.workers=1", "iterations=2", "logger=jsonl",
            "final_eval.num_tasks=2", "hydra.run.dir=run"]
    if algo not in ("rl2", "pearl"):
        tiny.append("policy.hidden_sizes=[8]")
    train = cli(["dmrl-train", *tiny, *sizes], tmp_path)
    assert "physics: Meta-World" in train.stdout
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    if algo in ("maml", "promp", "meta_sgd", "rl2"):  # the learners that log success in training
        assert {"meta_train/success_pre_adapt", "meta_train/success_post_adapt"} <= set(records[-1])
    cli(["dmrl-eval", "checkpoint=run/checkpoints/last.pt", "num_tasks=3", "hydra.run.dir=ev"], tmp_path)
    result = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert "success_mean" in result and all(0 <= s <= 1 for s in result["success_mean"])
    assert set(result["per_group"]) == {"reach-v3"} and result["per_group"]["reach-v3"]["num_tasks"] == 3
