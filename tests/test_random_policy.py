"""``dmrl-eval env=ENV policy=random``: a uniformly random policy scored without a checkpoint, on
the held-out tasks a checkpoint of the env meets, checked against independent computations.

Statistical checks are paired where they can be: on the same held-out tasks, the per-task
difference between dmrl's number and an independent one has mean 0, and the test allows 4
standard errors of that mean (a false failure about once in 16,000 runs)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dmrl.build import build, build_env
from dmrl.classic import UniformPolicy
from dmrl.cli.app import precheck
from dmrl.cli.evaluate import CHOICES, check_source, score_policy
from dmrl.cli.train import moved_key
from dmrl.config import CONF_DIR, EVAL_RULES, TRAIN_RULES, eval_source, validate
from dmrl.evaluation import evaluate, heldout_tasks
from dmrl.learner import MetaTestBudget
from dmrl.stored import stored_config

Z = 4.0  # standard errors allowed between two estimates of the same mean


def compose_config(name: str, overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name=name, overrides=overrides)


def random_eval(*overrides: str) -> dict:
    cfg = compose_config("eval", ["policy=random", "device=cpu", *overrides])
    validate(cfg, EVAL_RULES)
    return score_policy(cfg)


def paired_within(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float]:
    """Mean per-task difference and Z standard errors of it; asserts the difference is within."""
    diff = np.asarray(ours, dtype=float) - np.asarray(theirs, dtype=float)
    mean, tol = diff.mean(), Z * diff.std(ddof=1) / np.sqrt(diff.size)
    assert abs(mean) < tol, (mean, tol)
    return mean, tol


def numpy_point_nav(goals: np.ndarray, episodes: int, horizon: int, rng: np.random.Generator) -> np.ndarray:
    """Mean return per task of a uniform policy on 2-D navigation, from the MAML paper's rules
    (section 5.3), written without dmrl: start at 0, velocity ~ U[-0.1, 0.1]^2 per step, reward
    -||x - g|| after the move, the episode ends within 0.01 of the goal.  # [N]"""
    n = goals.shape[0]
    pos = np.zeros((n, episodes, 2))
    alive = np.ones((n, episodes), dtype=bool)
    ret = np.zeros((n, episodes))
    for _ in range(horizon):
        pos += rng.uniform(-0.1, 0.1, size=pos.shape)
        dist = np.linalg.norm(pos - goals[:, None, :], axis=-1)
        ret -= dist * alive
        alive &= dist >= 0.01
    return ret.mean(1)


def test_point_nav_random_return_matches_an_independent_numpy_rollout():
    result = random_eval("env=point_nav", "num_tasks=100", "episodes=20", "seed=3")
    assert result["axis"] == "inner_step" and result["adapt_steps"] == [0] and result["episodes_per_task"] == 20
    ours = np.asarray(result["per_task_returns"])[:, 0]  # [N]
    cfg = compose_config("eval", ["env=point_nav", "policy=random", "device=cpu"])
    goals = heldout_tasks(build_env(cfg, "cpu")[1], 100, 3)["goal"].astype(np.float64)
    theirs = numpy_point_nav(goals, 400, 100, np.random.default_rng(0))
    paired_within(ours, theirs)
    assert -80 < result["return_mean"][0] < -30  # a random walk of 100 steps of <= 0.14 from goals in [-0.5, 0.5]^2
    # raw velocity actions: the policy draws from [-0.1, 0.1] instead of [-1, 1], the env moves the same
    raw = random_eval("env=point_nav", "env.normalize_actions=false", "num_tasks=100", "episodes=20", "seed=3")
    np.testing.assert_allclose(np.asarray(raw["per_task_returns"])[:, 0], ours, rtol=1e-4)


def test_actions_are_uniform_over_each_envs_action_range():
    for override, low, high in (("env.horizon=5", -1.0, 1.0), ("env.nthread=1", -1.0, 1.0)):
        env_name = "point_nav" if override == "env.horizon=5" else "cheetah_vel"
        cfg = compose_config("eval", [f"env={env_name}", "policy=random", override])
        env, _ = build_env(cfg, "cpu")
        assert np.allclose(env.action_bounds()[0], low) and np.allclose(env.action_bounds()[1], high)
        a = UniformPolicy(env, seed=0).actions((50, 40)).numpy()  # [N, B, act_dim]
        assert a.shape == (50, 40, env.act_dim)
        assert a.min() >= low and a.max() <= high
        # U[low, high]: mean (low + high) / 2, variance (high - low)^2 / 12
        assert abs(a.mean() - (low + high) / 2) < Z * (high - low) / np.sqrt(12 * a.size)
        assert a.var() == pytest.approx((high - low) ** 2 / 12, rel=0.05)
    cfg = compose_config("eval", ["env=point_nav", "policy=random", "env.normalize_actions=false"])
    assert np.allclose(build_env(cfg, "cpu")[0].action_bounds()[1], 0.1)  # raw velocity: [-max_action, max_action]


@pytest.mark.parametrize("env_name,train_overrides", [
    ("point_nav", ["algo.fast_batch_size=1"]),
    ("bandit", ["algo=rl2", "algo.policy.hidden_size=4"]),
])
def test_same_seed_same_tasks_as_a_checkpoint_eval(env_name, train_overrides, monkeypatch):
    seen = {}

    def spy(key, meta_test):
        def wrapped(*args):  # (tasks, budget), after self for the class's function
            seen[key] = args[-2]
            return meta_test(*args)
        return wrapped

    # a checkpoint eval: the learner rebuilt from a stored (resolved) config, then evaluation.evaluate
    train = compose_config("train", [f"env={env_name}", *train_overrides, "device=cpu"])
    parts = build(stored_config(OmegaConf.to_yaml(train, resolve=True), "test config"), device="cpu")
    monkeypatch.setattr(parts.algo, "meta_test", spy("checkpoint", parts.algo.meta_test))
    evaluate(parts, num_tasks=7, seed=11, budget=MetaTestBudget(steps=0, episodes=1))
    monkeypatch.setattr(UniformPolicy, "meta_test", spy("random", UniformPolicy.meta_test))
    random_eval(f"env={env_name}", "num_tasks=7", "seed=11", "episodes=1")
    assert seen["checkpoint"].keys() == seen["random"].keys()
    for key in seen["checkpoint"]:
        np.testing.assert_array_equal(seen["random"][key], seen["checkpoint"][key])
    random_eval(f"env={env_name}", "num_tasks=7", "seed=12", "episodes=1")
    assert not all(np.array_equal(seen["random"][k], seen["checkpoint"][k]) for k in seen["checkpoint"])


def test_bandit_random_earns_the_mean_of_the_arms():
    n, pulls = 2000, 10
    result = random_eval("env=bandit", f"num_tasks={n}", f"episodes={pulls}", "seed=5")
    cfg = compose_config("eval", ["env=bandit", "policy=random", "device=cpu"])
    p = heldout_tasks(build_env(cfg, "cpu")[1], n, 5)["p"].astype(np.float64)  # [N, arms]
    # E[trial return | task] = pulls x the mean of the arms' success probabilities
    paired_within(result["per_task_trial_returns"], pulls * p.mean(1))
    assert result["axis"] == "episode" and len(result["episode_return_mean"]) == pulls
    assert result["trial_return_mean"] == pytest.approx(pulls * 0.5, abs=0.15)  # p ~ U[0, 1]: 0.5 a pull
    # the classic random baseline, played on the same tasks with its own coins, agrees
    classic = result["baselines"]["random"]
    se = np.hypot(result["trial_return_ci95"], classic["trial_return_ci95"]) / 1.96
    assert abs(result["trial_return_mean"] - classic["trial_return_mean"]) < Z * se
    assert result["baselines"]["bayes_optimal"]["trial_return_mean"] > result["trial_return_mean"] + 1.0
    # by hand: one sure arm among five pays 1/5 a pull to a uniform policy (0 to one stuck on arm 0)
    env, _ = build_env(cfg, "cpu")
    policy = UniformPolicy(env, seed=5)
    returns = policy.episode_returns({"p": np.tile(np.float32([0, 0, 0, 0, 1]), (n, 1))}, pulls).numpy()
    assert abs(returns.mean() - 0.2) < Z * np.sqrt(0.2 * 0.8 / returns.size)


def test_tabular_random_agrees_with_the_classic_random_baseline():
    result = random_eval("env=tabular_mdp", "num_tasks=200", "episodes=5", "seed=2")
    assert set(result["baselines"]) == {"random", "psrl"} and result["episodes_per_task"] == 5
    classic = result["baselines"]["random"]
    se = np.hypot(result["trial_return_ci95"], classic["trial_return_ci95"]) / 1.96
    assert abs(result["trial_return_mean"] - classic["trial_return_mean"]) < Z * se


BAD = [
    ([], "checkpoint is required"),
    (["checkpoint=x.pt", "policy=random"], "checkpoint and policy=random exclude each other"),
    (["checkpoint=x.pt", "policy=random", "env=bandit"], "checkpoint and policy=random exclude each other"),
    (["policy=foo", "env=bandit"], "policy=foo: dmrl-eval takes policy=random"),
    (["policy=gru", "env=bandit"], "policy=gru: dmrl-eval takes policy=random"),
    (["policy=random"], "env is required with policy=random"),
    (["checkpoint=x.pt", "env=bandit"], "env: a checkpoint brings its own env"),
    (["env=point_nav", "policy=random", "env._target_=os.system"], "env._target_ is 'os.system'"),
    (["env=point_nav", "policy=random", "tasks._target_=os.system"], "tasks._target_ is 'os.system'"),
    (["env=point_nav", "policy=random", "env.horizon=0"], "env.horizon must be an integer >= 1"),
    (["env=point_nav", "policy=random", "episodes=0"], "episodes must be null or an integer >= 1"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) or "nothing" for a, _ in BAD])
def test_bad_inputs_one_line_before_any_work(args, message, capsys):
    with pytest.raises(SystemExit) as exit:
        precheck("dmrl-eval", "eval", args, EVAL_RULES, check_source, CHOICES)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit.value.code == 2 and len(err) == 1 and message in err[0], err


def test_train_refuses_the_random_policy(capsys):
    with pytest.raises(SystemExit):
        precheck("dmrl-train", "train", ["policy=random"], TRAIN_RULES, moved=moved_key)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "policy=random is dmrl-eval's, with nothing to train" in err[0], err
    assert "algo/policy=gaussian_mlp|gru|maml_paper|tanh_gaussian" in err[0]
    with pytest.raises(SystemExit):  # the algo's policy group has no such option
        precheck("dmrl-train", "train", ["algo/policy=random"], TRAIN_RULES, moved=moved_key)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "algo/policy=random: no such option; allowed: gaussian_mlp, gru" in err[0], err
    # a stored config naming it, in the algo's place or (older) at the top level: refused by its _target_
    train = OmegaConf.to_container(compose_config("train", []), resolve=True)
    train["algo"]["policy"] = {"_target_": "dmrl.classic.UniformPolicy", "_partial_": True}
    with pytest.raises(Exception, match="algo.policy._target_ is 'dmrl.classic.UniformPolicy'"):
        validate(OmegaConf.create(train), TRAIN_RULES)
    train["policy"] = train["algo"].pop("policy")
    with pytest.raises(Exception, match="algo.policy._target_ is 'dmrl.classic.UniformPolicy'.*refused"):
        stored_config(OmegaConf.to_yaml(OmegaConf.create(train)), "checkpoint old.pt")
    assert eval_source(compose_config("eval", ["env=bandit", "policy=random"])) == "random"


def test_console_script_writes_the_usual_files(tmp_path, cli_env):
    def run(*args):
        return subprocess.run(["dmrl-eval", *args], cwd=tmp_path, env=cli_env, capture_output=True, text=True,
                              timeout=300)

    proc = run("env=bandit", "policy=random", "num_tasks=30", "episodes=4", "device=cpu", "hydra.run.dir=ev")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "ev/eval.json").read_text())
    assert report["policy"] == "random" and report["env"] == "bandit" and report["num_tasks"] == 30
    assert len(report["episode_return_mean"]) == 4 and "bayes_optimal" in report["baselines"]
    assert (tmp_path / "ev/eval.csv").read_text().splitlines()[1].startswith("policy=random,1,")
    assert (tmp_path / "ev/adaptation.png").stat().st_size > 1000
    assert "policy=random" in proc.stdout and "bayes_optimal" in proc.stdout
    proc = run("checkpoint=x.pt", "policy=random", "env=bandit")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "exclude each other" in proc.stderr
    assert not (tmp_path / "outputs").exists()  # refused before Hydra made a run dir
    help_text = run("--help").stdout
    assert "policy=random" in help_text and "dmrl-eval env=point_nav policy=random" in help_text
