"""The one validation mechanism (dmrl.keys, dmrl.config.validate): every key of every config group
option is declared by the class that reads it, and a bad value of each is refused in one line that
names its full path."""

from __future__ import annotations

from functools import cache

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dmrl.algos import MAML, ProMP
from dmrl.config import CONF_DIR, EVAL_RULES, TRAIN_RULES, component_class, components, validate
from dmrl.envs import Bandit
from dmrl.errors import ConfigError
from dmrl.keys import check_node, constructor_params, declared_keys

# every config group, nested ones (the algo's policy, meta-optimizer and sampler: algo/policy) included
GROUPS = sorted(p.relative_to(CONF_DIR).as_posix() for p in CONF_DIR.rglob("*") if p.is_dir())
# launcher and hparams_search configure Hydra's plugins, not objects; policy is dmrl-eval's
# (policy=random: test_every_key_of_the_eval_config_is_declared)
OPTIONS = [(g, f.stem) for g in GROUPS if g not in ("launcher", "hparams_search", "policy")
           for f in sorted((CONF_DIR / g).glob("*.yaml"))]
# Options that only fit RL² (discrete actions, the recurrent policy, PPO) are composed with it.
NEEDS_RL2 = {("env", "bandit"), ("env", "tabular_mdp"), ("tasks", "bandit"), ("tasks", "tabular_mdp"),
             ("algo/policy", "gru"), ("algo/meta_optimizer", "ppo")}
BAD = {"not": "a value"}  # a mapping without _target_: no rule allows it
# Classes of the PEARL work, which landed before this mechanism: their author declares their KEYS
# next, and removes each from here (the test fails for a listed class that declares all its keys).
PENDING: set[str] = set()  # classes a config names that do not declare their keys yet


@cache
def compose_option(group: str, option: str):  # (read only: a test that edits one edits a plain copy)
    overrides = [f"{group}={option}"]
    if group == "tasks":  # a task distribution needs its family's env
        overrides.insert(0, f"env={option.removesuffix('_wide').removesuffix('_pool')}")
    if (group, option) in NEEDS_RL2:
        overrides.insert(0, "algo=rl2")
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="train", overrides=overrides)


def own_leaves(node, path=""):
    """Paths of the leaves of ``node`` outside every component node (dmrl-train's own keys)."""
    if isinstance(node, dict) and "_target_" in node and path:
        return
    if isinstance(node, dict):
        for key, value in node.items():
            yield from own_leaves(value, f"{path}.{key}" if path else key)
    else:
        yield path


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_key_of_every_option_is_declared(group, option):
    cfg = compose_option(group, option)
    for path, node in components(cfg):
        cls = component_class(node, path)
        keys = declared_keys(cls)
        undeclared = [k for k in node if not str(k).startswith("_") and k not in (keys or {})]
        if node._target_ in PENDING:
            assert keys is None or undeclared, f"{node._target_} declares its keys now: remove it from PENDING"
            continue
        assert keys is not None, f"{path}: {cls.__qualname__} declares no KEYS"
        assert not undeclared, f"{path}: {cls.__qualname__} does not declare {undeclared}"
        # a declared key is one the constructor takes
        assert set(keys) <= constructor_params(cls), f"{path}: {set(keys) - constructor_params(cls)}"
    data = OmegaConf.to_container(cfg, resolve=False)
    for key in own_leaves(data):
        assert key in TRAIN_RULES, f"{key}: neither dmrl-train's own key nor a component's"
    # the algo's sampler names no class: its keys are dmrl-train's own (dmrl.build reads them)
    for key in data["algo"]["sampler"]:
        assert f"algo.sampler.{key}" in TRAIN_RULES, f"algo.sampler.{key}: not declared"
    assert {"policy", "meta_optimizer", "sampler"} <= set(data["algo"]) and "policy" not in data


@pytest.mark.parametrize("overrides", [[], ["env=point_nav", "policy=random"], ["env=cheetah_vel", "policy=random"]])
def test_every_key_of_the_eval_config_is_declared(overrides):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="eval", overrides=overrides)
    for key in own_leaves(OmegaConf.to_container(cfg, resolve=False)):
        assert key in EVAL_RULES or key == "env", key  # env: null without policy=random (dmrl.config.eval_source)
    for path, node in components(cfg):
        assert set(k for k in node if not k.startswith("_")) <= set(declared_keys(component_class(node, path))), path
    validate(cfg, EVAL_RULES)
    if overrides:  # policy=random: its env is checked by the env's class, as dmrl-train's
        cfg.env.horizon = 0
        with pytest.raises(ConfigError, match=r"^env.horizon must be an integer >= 1, got 0$"):
            validate(cfg, EVAL_RULES)


def _bad_value_cases():
    """(option, path, key) of every declared key of every component, each (path, class, key) once."""
    seen, cases = set(), []
    for group, option in OPTIONS:
        cfg = compose_option(group, option)
        for path, node in components(cfg):
            if node._target_ in PENDING:
                continue
            for key in node:
                if not str(key).startswith("_") and (path, node._target_, key) not in seen:
                    seen.add((path, node._target_, key))
                    cases.append(((group, option), path, key))
    return cases


CASES = _bad_value_cases()


@pytest.mark.parametrize("option,path,key", CASES, ids=[f"{'='.join(o)}:{p}.{k}" for o, p, k in CASES])
def test_a_bad_value_of_a_declared_key_is_refused_with_its_full_path(option, path, key):
    data = OmegaConf.to_container(compose_option(*option), resolve=True)
    node = data
    for part in path.split("."):
        node = node[part]
    node[key] = BAD
    with pytest.raises(ConfigError) as e:
        validate(OmegaConf.create(data), TRAIN_RULES)
    message = str(e.value)
    assert message.startswith(f"{path}.{key} must be ") and message.endswith(f"got {BAD!r}"), message
    assert "\n" not in message


def test_undeclared_keys_are_refused_naming_them():
    cfg = compose_option("algo/policy", "gaussian_mlp")
    data = OmegaConf.to_container(cfg, resolve=True)
    data["algo"]["policy"]["frobnicate"] = 1  # e.g. a stored config of another dmrl version
    data["algo"]["baseline"]["reg_coef"] = 1e-5
    with pytest.raises(ConfigError, match=r"^algo.policy.frobnicate: GaussianMLPPolicy takes no such key.*hidden_sizes"):
        validate(OmegaConf.create(data), TRAIN_RULES)
    del data["algo"]["policy"]["frobnicate"]
    with pytest.raises(ConfigError, match=r"^algo.baseline.reg_coef: LinearFeatureBaseline takes no such key"):
        validate(OmegaConf.create(data), TRAIN_RULES)
    validate(OmegaConf.create(data), TRAIN_RULES, unknown_ok=True)  # a resume's command line


def test_declarations_are_inherited_and_withdrawn():
    assert set(declared_keys(MAML)) < set(declared_keys(ProMP)) and "kl_coef" in declared_keys(ProMP)
    assert "horizon" not in declared_keys(Bandit)  # one pull per episode: fixed, not a key
    with pytest.raises(ConfigError, match=r"^env.horizon: Bandit takes no such key"):
        check_node(Bandit, {"arms": 3, "horizon": 5}, "env")


def test_cross_checks_see_the_constructors_defaults():
    check_node(MAML, {"inner_lr": [0.1]}, "algo")
    # inner_steps left out: the constructor's default (1) is what inner_lr's list must match
    with pytest.raises(ConfigError, match=r"^algo.inner_lr must be a number > 0 or a list of 1 numbers"):
        check_node(MAML, {"inner_lr": [0.1, 0.2]}, "algo")
    check_node(MAML, {"inner_lr": [0.1, 0.2], "inner_steps": 2}, "algo")


def test_a_class_that_declares_nothing_is_not_checked():
    class Plugin:  # a learner written without KEYS (tests/plugins/stub_learner.py)
        def __init__(self, anything=None) -> None: ...

    check_node(Plugin, {"anything": BAD}, "algo")
    with pytest.raises(ConfigError, match=r"^algo.more: Plugin takes no such key, and nothing would read it"):
        check_node(Plugin, {"anything": BAD, "more": 1}, "algo")  # its constructor says what it reads
