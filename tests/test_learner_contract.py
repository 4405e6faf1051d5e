"""The learner contract (dmrl.learner): a learner that lives in tests/plugins only runs through
dmrl-train, resume, dmrl-eval, final_eval, summary.json and dmrl-report without any edit of dmrl;
the declared state is what checkpoints hold."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from dmrl.learner import AdaptationResult, DeclaredState
from dmrl.evaluation import summarize_result

PLUGINS = Path(__file__).parent / "plugins"
STUB = ["algo=stub", "logger=jsonl", "env.horizon=10", "final_eval.num_tasks=5"]


@pytest.fixture
def plugin_env(cli_env):
    return dict(cli_env, DMRL_CONFIG_PATH=str(PLUGINS / "conf"),
                PYTHONPATH=os.pathsep.join([str(PLUGINS), cli_env.get("PYTHONPATH", "")]).rstrip(os.pathsep))


def run(cmd, cwd, env, ok=True):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def records(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_learner_from_outside_dmrl_runs_end_to_end(tmp_path, plugin_env):
    proc = run(["dmrl-train", *STUB, "iterations=3", "hydra.run.dir=full"], tmp_path, plugin_env)
    assert "done: iteration 3" in proc.stdout and "return " in proc.stdout  # its HEADLINE on the last line
    full = records(tmp_path / "full")
    assert [r["iteration"] for r in full] == [1, 2, 3] and all("meta_train/return" in r for r in full)
    summary = json.loads((tmp_path / "full/summary.json").read_text())
    assert summary["status"] == "finished" and summary["objective_name"] == "heldout/return"
    assert summary["objective"] == pytest.approx(summary["heldout"]["return_mean"][-1])
    state = torch.load(tmp_path / "full/checkpoints/last.pt", weights_only=True)
    assert list(state["algo"]) == ["policy", "adam", "sampler", "task_rng"]  # its declared STATE

    # resume equals uninterrupted, through the declared state
    run(["dmrl-train", *STUB, "iterations=2", "hydra.run.dir=part"], tmp_path, plugin_env)
    run(["dmrl-train", "resume=part/checkpoints/last.pt", "iterations=3"], tmp_path, plugin_env)
    assert records(tmp_path / "part") == full

    run(["dmrl-eval", "checkpoint=full/checkpoints/last.pt", "num_tasks=4", "adapt_steps=0", "hydra.run.dir=ev"],
        tmp_path, plugin_env)
    report = json.loads((tmp_path / "ev/eval.json").read_text())
    assert report["adapt_steps"] == [0] and report["num_tasks"] == 4 and report["objective_name"] == "heldout/return"

    proc = run(["dmrl-report", "full", "part"], tmp_path, plugin_env)
    assert "2 finished" in proc.stdout, proc.stdout

    # without DMRL_CONFIG_PATH its checkpoint names code dmrl does not know: refused, nothing built
    env = {k: v for k, v in plugin_env.items() if k != "DMRL_CONFIG_PATH"}
    proc = run(["dmrl-eval", "checkpoint=full/checkpoints/last.pt"], tmp_path, env, ok=False)
    assert proc.returncode != 0 and "stub_learner.Stub" in proc.stderr and "refused" in proc.stderr


class _Toy(DeclaredState):
    STATE = ("net", "rng", "gen")

    def __init__(self):
        self.net = torch.nn.Linear(2, 2)
        self.rng = np.random.default_rng(3)
        self.gen = torch.Generator().manual_seed(4)


def test_declared_state_round_trips_every_kind():
    a, b = _Toy(), _Toy()
    torch.nn.init.constant_(a.net.weight, 0.5)
    a.rng.random(5)
    torch.rand(3, generator=a.gen)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.net.weight, b.net.weight)
    assert a.rng.random() == b.rng.random()
    assert torch.equal(torch.rand(2, generator=a.gen), torch.rand(2, generator=b.gen))
    with pytest.raises(KeyError, match="lacks gen"):
        b.load_state_dict({k: v for k, v in a.state_dict().items() if k != "gen"})


def test_summarize_result_by_hand():
    curve = np.array([[1.0, 3.0], [2.0, 6.0]], dtype=np.float32)  # [K=2, tasks=2]
    out = summarize_result(AdaptationResult("inner_step", curve, "heldout/x", lambda r: r[-1]), 2)
    assert out["adapt_steps"] == [0, 1] and out["return_mean"] == [2.0, 4.0]
    assert out["return_ci95"][1] == pytest.approx(1.96 * np.std([2.0, 6.0], ddof=1) / np.sqrt(2))
    assert out["objective"] == 4.0 and out["objective_name"] == "heldout/x"
    out = summarize_result(AdaptationResult("episode", curve, "heldout/trial_return", lambda r: r.sum(0)), 2)
    assert out["episodes"] == [1, 2] and out["trial_return_mean"] == out["objective"] == 6.0
    assert out["per_task_trial_returns"] == [3.0, 9.0] and out["baselines"] == {}


def test_success_gain_is_paired_over_the_tasks():
    from dmrl.evaluation import format_table

    curve = np.zeros((3, 4), dtype=np.float32)
    success = np.array([[0.0, 0.5, 1.0, 0.0], [0.0, 0.5, 1.0, 0.5], [1.0, 0.5, 1.0, 0.5]])  # [K=3, tasks=4]
    out = summarize_result(AdaptationResult("inner_step", curve, "heldout/x", lambda r: r[-1], success=success), 4)
    gain = np.array([1.0, 0.0, 0.0, 0.5])  # last minus first, task by task
    assert out["success_gain"] == pytest.approx(gain.mean())
    assert out["success_gain_ci95"] == pytest.approx(1.96 * gain.std(ddof=1) / 2)
    assert out["per_task_success"][3] == [0.0, 0.5, 0.5]
    # paired: a gain on every task is certain even when the tasks differ widely
    wide = np.array([[0.0, 0.9], [0.1, 1.0]])
    out = summarize_result(AdaptationResult("inner_step", curve[:2, :2], "heldout/x", lambda r: r[-1], success=wide), 2)
    assert out["success_gain"] == pytest.approx(0.1) and out["success_gain_ci95"] == pytest.approx(0.0, abs=1e-9)
    assert format_table(out).endswith("paired over the tasks: +0.100 +- 0.000")
    one = summarize_result(AdaptationResult("inner_step", curve[:1], "heldout/x", lambda r: r[-1], success=success[:1]), 4)
    assert "success_gain" not in one
