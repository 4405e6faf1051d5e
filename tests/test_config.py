"""Every option of every config group composes with the real configs and builds."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from dmrl.build import build
from dmrl.config import CONF_DIR, EVAL_RULES, TRAIN_RULES, eval_source, rule_of, validate

# every config group, nested ones (the algo's policy, meta-optimizer and sampler: algo/policy) included
GROUPS = sorted(p.relative_to(CONF_DIR).as_posix() for p in CONF_DIR.rglob("*") if p.is_dir())
# launcher and hparams_search configure Hydra's plugins, not objects: test_sweep.py composes them;
# policy is dmrl-eval's (policy=random, tests/test_random_policy.py), not a group of dmrl-train's
OPTIONS = [(g, f.stem) for g in GROUPS if g not in ("launcher", "hparams_search", "policy")
           for f in sorted((CONF_DIR / g).glob("*.yaml"))]
# Options that only fit RL² (discrete actions, the recurrent policy, PPO) are built with it.
NEEDS_RL2 = {("env", "bandit"), ("env", "tabular_mdp"), ("tasks", "bandit"), ("tasks", "tabular_mdp"),
             ("algo/policy", "gru"), ("algo/meta_optimizer", "ppo")}
NEEDS_PEARL = {("algo", "pearl"), ("algo/meta_optimizer", "sac"), ("algo/policy", "tanh_gaussian")}  # with a task pool


def compose_train(overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="train", overrides=overrides)


def test_groups_are_the_documented_ones():
    assert {"env", "tasks", "algo", "algo/policy", "algo/meta_optimizer", "algo/sampler", "logger",
            "experiment"} <= set(GROUPS)
    # dmrl-eval's policy group holds what it scores without a checkpoint, no network to train
    assert [p.stem for p in (CONF_DIR / "policy").glob("*.yaml")] == ["random"]


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_builds(group, option):
    if (group, option) == ("algo/sampler", "ray"):
        pytest.importorskip("ray")  # the sweep extra
    overrides = [f"{group}={option}", "device=cpu"]
    if group == "tasks":  # a task distribution needs its family's env
        overrides.insert(0, f"env={option.removesuffix('_wide').removesuffix('_pool')}")
    if (group, option) in NEEDS_RL2:
        overrides.insert(0, "algo=rl2")
    if (group, option) in NEEDS_PEARL:
        overrides[:0] = ["env=point_robot", "algo=pearl"]
    cfg = compose_train(overrides)
    if cfg.env._target_.endswith(".MetaWorld"):
        pytest.importorskip("metaworld")  # the metaworld extra (make test-metaworld runs these)
    validate(cfg, TRAIN_RULES)
    parts = build(cfg)
    env = parts.algo.sampler.env  # the env the learner acts in (the oracle's carries the task in its observations)
    assert parts.policy.obs_dim == env.obs_dim + getattr(parts.algo, "latent_dim", 0)  # PEARL's actor also reads z
    tasks = parts.tasks.sample(2, __import__("numpy").random.default_rng(0))
    obs = env.reset(tasks, 3)
    assert obs.shape == (2, 3, env.obs_dim)


def test_public_keys_exist_in_the_default_config():
    cfg = compose_train([])
    for key in ("seed", "iterations", "device", "resume", "checkpoint.every", "checkpoint.keep",
                "algo.meta_batch_size", "algo.fast_batch_size", "algo.inner_steps", "algo.inner_lr",
                "algo.first_order", "algo.gamma", "algo.gae_lambda", "algo.meta_optimizer.max_kl",
                "algo.meta_optimizer.cg_iters", "algo.meta_optimizer.cg_damping", "algo.meta_optimizer.ls_max_steps",
                "algo.meta_optimizer.ls_backtrack_ratio", "algo.policy.hidden_sizes", "algo.policy.activation", "env.horizon"):
        assert rule_of(cfg, key, TRAIN_RULES) is not None, key  # dmrl-train's own, or its component's KEYS
        assert cfg is not None and __import__("omegaconf").OmegaConf.select(cfg, key, default="MISSING") != "MISSING", key
    assert cfg.env._target_.endswith("PointNav") and cfg.algo._target_.endswith("MAML")
    assert cfg.algo.meta_optimizer._target_.endswith("TRPO") and cfg.algo.sampler.name == "local"
    assert set(cfg) >= {"env", "tasks", "algo"} and not {"policy", "meta_optimizer", "sampler"} & set(cfg)


def test_task_overrides_from_the_command_line():
    cfg = compose_train(["tasks.low=-0.2", "tasks.high=0.3"])
    goals = build(cfg).tasks.sample(500, __import__("numpy").random.default_rng(0))["goal"]
    assert goals.min() >= -0.2 and goals.max() <= 0.3 and goals.max() > 0.25
    assert compose_train(["tasks=point_nav_wide"]).tasks.high == 1.0


def test_eval_config_requires_a_checkpoint():
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="eval")
    validate(cfg, EVAL_RULES)  # each key is fine alone; a checkpoint or policy=random is what is missing
    with pytest.raises(Exception, match="checkpoint is required"):
        eval_source(cfg)


def test_point_nav_action_units_of_new_and_old_configs():
    """New configs act in normalized units; a config stored before ``env.normalize_actions`` existed
    (an older checkpoint's) rebuilds the raw-velocity env it was trained on."""
    from omegaconf import OmegaConf, open_dict

    cfg = compose_train(["device=cpu"])
    assert build(cfg).env.action_scale == pytest.approx(0.1)
    with open_dict(cfg):
        del cfg.env.normalize_actions
    old = OmegaConf.create(OmegaConf.to_container(cfg))
    assert build(old).env.action_scale == 1.0
