"""Long learning runs (``-m slow``; ``make test-all``): the default job must really learn."""

from __future__ import annotations

import json
import subprocess

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.xfail(strict=False, reason="measured -13.8 ± 1.5 on the seed-0 100-task set (session 4); one MAML step's "
                                         "floor on this task is about -13.2 there (docs/results.md)")
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


@pytest.mark.parametrize("experiment", ["rl2_bandit", pytest.param("rl2_tabular_mdp", marks=pytest.mark.xfail(
    strict=False, reason="5 preset runs: 128.0-131.8, mean 129.7 vs PSRL 133.2 ± 1.6 (met by 1 of 5)"))])
def test_rl2_matches_the_best_classic_baseline(experiment, tmp_path, cli_env):
    """RL²'s presets on 1,000 held-out tasks: trial return >= the best baseline's, within its 95% interval."""
    subprocess.run(["dmrl-train", f"experiment={experiment}", "logger=quiet", "hydra.run.dir=run"], cwd=tmp_path,
                   env=cli_env, check=True, timeout=1800)
    subprocess.run(["dmrl-eval", "checkpoint=run/checkpoints/last.pt", "num_tasks=1000", "hydra.run.dir=ev"],
                   cwd=tmp_path, env=cli_env, check=True, timeout=600)
    report = json.loads((tmp_path / "ev/eval.json").read_text())
    best = max(report["baselines"].values(), key=lambda b: b["trial_return_mean"])
    assert report["trial_return_mean"] >= best["trial_return_mean"] - best["trial_return_ci95"]


def _train_and_eval(experiment: str, tmp_path, cli_env, *eval_args: str) -> dict:
    run_dir, ev = tmp_path / experiment, tmp_path / f"eval_{experiment}"
    subprocess.run(["dmrl-train", f"experiment={experiment}", "logger=quiet", f"hydra.run.dir={run_dir}"],
                   cwd=tmp_path, env=cli_env, check=True, timeout=3600)
    subprocess.run(["dmrl-eval", f"checkpoint={run_dir}/checkpoints/last.pt", *eval_args, f"hydra.run.dir={ev}"],
                   cwd=tmp_path, env=cli_env, check=True, timeout=1200)
    return json.loads((ev / "eval.json").read_text())


@pytest.fixture(scope="module")
def maml_trpo_point_nav(tmp_path_factory, cli_env_module) -> float:
    report = _train_and_eval("maml_point_nav", tmp_path_factory.mktemp("maml"), cli_env_module,
                             "num_tasks=1000", "seed=7", "adapt_steps=1")
    return report["return_mean"][1]


@pytest.mark.parametrize("experiment", [
    "promp_point_nav",  # 1,200 iterations: -12.41 ± 0.47 (400: -16.20)
    "maml_vpg_point_nav",  # 2,000 iterations: -13.66 ± 0.47 (500: -16.50)
    "maml_ppo_point_nav",
    "meta_sgd_point_nav",
])
def test_gradient_family_reaches_maml_trpo_within_two(experiment, maml_trpo_point_nav, tmp_path, cli_env):
    """Issue 14: ProMP, MAML-VPG, MAML-PPO and Meta-SGD within 2.0 of MAML-TRPO after one step."""
    report = _train_and_eval(experiment, tmp_path, cli_env, "num_tasks=1000", "seed=7", "adapt_steps=1")
    assert report["return_mean"][1] >= maml_trpo_point_nav - 2.0


@pytest.mark.xfail(strict=False, reason="session 9: Meta-SGD (PPO outer rule, 800 iterations) -12.49 ± 0.44 vs "
                                         "MAML-TRPO -12.81 ± 0.48: ahead by 0.32 ± 0.35 (paired), not significantly; both "
                                         "at the -12.2 floor of a one-step adaptation that cannot see the goal's distance "
                                         "(docs/results.md, Session 9: Meta-SGD's outer rule)")
def test_meta_sgd_beats_maml_trpo(maml_trpo_point_nav, tmp_path, cli_env):
    report = _train_and_eval("meta_sgd_point_nav", tmp_path, cli_env, "num_tasks=1000", "seed=7", "adapt_steps=1")
    assert report["return_mean"][1] - report["return_ci95"][1] > maml_trpo_point_nav


def test_baselines_bracket_maml(maml_trpo_point_nav, tmp_path, cli_env):
    """Multitask fine-tuned (its best step size of 0.1, 0.01, 0.001) below MAML after one step; the oracle above."""
    best = max(_train_and_eval("multitask_point_nav", tmp_path / str(s), cli_env, "num_tasks=1000", "seed=7",
                               "adapt_steps=1", f"lr_scale={s}")["return_mean"][1] for s in (1.0, 0.1, 0.01))
    oracle = _train_and_eval("oracle_point_nav", tmp_path, cli_env, "num_tasks=1000", "seed=7", "adapt_steps=0")
    assert best < maml_trpo_point_nav < oracle["return_mean"][0]


def test_pearl_beats_maml_on_the_point_robot(tmp_path, cli_env):
    """Issue 16: PEARL after its 20 exploration trajectories (400 steps per task) above MAML-TRPO after
    one step of 20 episodes (400 steps); session 10: -5.48 ± 0.58 vs -7.4 ± 0.4."""
    pearl = _train_and_eval("pearl_point_robot", tmp_path, cli_env, "num_tasks=100", "seed=7")
    maml = _train_and_eval("maml_point_robot", tmp_path, cli_env, "num_tasks=100", "seed=7", "adapt_steps=1")
    assert pearl["objective"] - pearl["objective_ci95"] > maml["return_mean"][1]


@pytest.mark.xfail(strict=False, reason="session 12, the preset with the reference's collection (posterior inferred "
                                         "again after every trajectory): goal-hit after 5 exploration trajectories "
                                         "0.27 / 0.29 / 0.22 (evaluation seeds 7 / 8 / 9; training seed 1: 0.33 / "
                                         "0.33 / 0.26), 0.27 at trajectory 20 (MAML-TRPO 0.20); the critic on the "
                                         "sparse reward too: 0.38 / 0.34 / 0.31 (training seed 1: 0.10); session 11: "
                                         "five goal-directed trajectories sampled as PEARL explores find the goal on "
                                         "at most 0.55 of these tasks (scripts/sparse_point_robot_ceiling.py), "
                                         "below 0.8; session 13, both seed-0 runs resumed to 120 iterations (3x the "
                                         "budget): after 5 trajectories 0.25-0.49, after 20 (exploration_trajectories"
                                         "=20) 0.69 / 0.69 / 0.71 with the sparse critic (training seed 1: 0.53 / 0.58 / "
                                         "0.54), 0.27-0.36 with the dense")
def test_pearl_hits_the_sparse_goal(tmp_path, cli_env):
    pearl = _train_and_eval("pearl_sparse_point_robot", tmp_path, cli_env, "num_tasks=100", "seed=7")
    assert pearl["success_mean"][pearl["num_exp_traj_eval"]] >= 0.8


def test_pearl_cheetah_vel_short_learns_from_its_exploration(tmp_path, cli_env):
    """Issue 16: after two exploration trajectories the return is clearly above the first trajectory's (z
    from the prior); session 10: -84.6 ± 15.2 vs -245.6 ± 67.0 (30 test velocities, seed 7)."""
    pearl = _train_and_eval("pearl_cheetah_vel_short", tmp_path, cli_env, "num_tasks=30", "seed=7", "episodes=3")
    after, first = pearl["trajectory_return_mean"][2], pearl["trajectory_return_mean"][0]
    assert after - pearl["trajectory_return_ci95"][2] > first + pearl["trajectory_return_ci95"][0]
