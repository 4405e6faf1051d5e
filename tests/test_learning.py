"""Long learning runs (``-m slow``; ``make test-all``): the default job must really learn."""

from __future__ import annotations

import json
import subprocess

import pytest

pytestmark = pytest.mark.slow


def test_default_training_adapts_on_held_out_tasks(tmp_path, cli_env):
    """The default `dmrl-train` and a 100-task evaluation: 1-step return >= -12, above 0-step."""
    subprocess.run(["dmrl-train", "logger=quiet", "hydra.run.dir=run"], cwd=tmp_path, env=cli_env, check=True,
                   timeout=1800)
    subprocess.run(["dmrl-eval", "checkpoint=run/checkpoints/last.pt", "num_tasks=100", "adapt_steps=1",
                    "hydra.run.dir=ev"], cwd=tmp_path, env=cli_env, check=True, timeout=600)
    report = json.loads((tmp_path / "ev/eval.json").read_text())
    pre, post = report["return_mean"]
    pre_ci, post_ci = report["return_ci95"]
    assert post >= -12.0
    assert post - post_ci > pre + pre_ci  # clearly above: the intervals do not overlap


@pytest.mark.parametrize("experiment", ["rl2_bandit", "rl2_tabular_mdp"])
def test_rl2_matches_the_best_classic_baseline(experiment, tmp_path, cli_env):
    """RL²'s presets on 1,000 held-out tasks: trial return >= the best baseline's, within its 95% interval."""
    subprocess.run(["dmrl-train", f"experiment={experiment}", "logger=quiet", "hydra.run.dir=run"], cwd=tmp_path,
                   env=cli_env, check=True, timeout=1800)
    subprocess.run(["dmrl-eval", "checkpoint=run/checkpoints/last.pt", "num_tasks=1000", "hydra.run.dir=ev"],
                   cwd=tmp_path, env=cli_env, check=True, timeout=600)
    report = json.loads((tmp_path / "ev/eval.json").read_text())
    best = max(report["baselines"].values(), key=lambda b: b["trial_return_mean"])
    assert report["trial_return_mean"] >= best["trial_return_mean"] - best["trial_return_ci95"]
