"""dmrl-eval: adapt a checkpoint to held-out tasks (``dmrl-eval checkpoint=PATH``), or score a
policy without one on an env's held-out tasks (``dmrl-eval env=ENV policy=random``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dmrl.cli.app import help_text, run
from dmrl.config import EVAL_POLICIES, EVAL_RULES, eval_source, validate
from dmrl.errors import ConfigError
from dmrl.stored import check_targets, stored_config


def check_source(cfg: DictConfig, multirun: bool = False) -> None:
    """Before any work: a checkpoint or a policy (not both, not neither), and a composed env that
    names only the classes dmrl's own config groups put there (``env._target_=...`` on the command
    line is refused as in a checkpoint's config)."""
    if eval_source(cfg) != "checkpoint":
        check_targets(OmegaConf.masked_copy(cfg, [k for k in ("env", "tasks", "policy") if k in cfg]), "command line")


def eval_job(cfg: DictConfig) -> dict:
    validate(cfg, EVAL_RULES)
    check_source(cfg)
    if cfg.exploration_trajectories is not None and (cfg.protocol != "dmrl" or eval_source(cfg) != "checkpoint"):
        raise ConfigError("exploration_trajectories: a PEARL checkpoint's protocol=dmrl meta-test only (leave it null "
                          "with policy=random or protocol=metaworld, whose adaptation_episodes set the exploration)")
    if cfg.protocol == "metaworld":
        return protocol_job(cfg)
    return checkpoint_job(cfg) if eval_source(cfg) == "checkpoint" else policy_job(cfg)


def load_learner(cfg: DictConfig):
    """``(parts, state, path)`` of ``checkpoint=``: the learner rebuilt from the config stored in the
    checkpoint (checked before anything is built, never today's defaults), its trained state restored
    (the learner only: evaluation seeds its own streams)."""
    from dmrl.build import build
    from dmrl.checkpoint import load_checkpoint, restore_state

    ckpt = Path(cfg.checkpoint).expanduser().resolve()
    state = load_checkpoint(ckpt)
    parts = build(stored_config(state["config"], f"checkpoint {ckpt}"), device=cfg.device)
    restore_state(parts.algo, {"algo": state["algo"], "tasks": state.get("tasks")}, ckpt, parts.tasks)
    return parts, state, ckpt


def make_policy(cfg: DictConfig):
    """``(policy, env, task distribution)`` of ``policy=NAME`` on ``env=ENV`` (no checkpoint): the env and
    its tasks from dmrl's config groups (every ``_target_`` checked first)."""
    from hydra.utils import instantiate

    from dmrl.build import build_env, constructor_errors

    env, distribution = build_env(cfg, cfg.device)
    with constructor_errors():
        return instantiate(cfg.policy)(env), env, distribution


def protocol_job(cfg: DictConfig) -> dict:
    """``protocol=metaworld``: Meta-World's meta-learning evaluation of a checkpoint (or policy=random)."""
    from dmrl.evaluation import format_protocol_table, metaworld_protocol

    if eval_source(cfg) == "checkpoint":
        parts, state, ckpt = load_learner(cfg)
        learner, env, tasks, head = parts.algo, parts.env, parts.tasks, {"checkpoint": str(ckpt), "iteration": int(state["iteration"])}
    else:
        learner, env, tasks = make_policy(cfg)
        head = {"policy": eval_source(cfg), "env": HydraConfig.get().runtime.choices.get("env")}
    result = {**head, **metaworld_protocol(learner, env, tasks, num_tasks=int(cfg.num_tasks), seed=int(cfg.seed),
                                           num_evals=int(cfg.num_evals), adapt_steps=int(cfg.adaptation_steps),
                                           adapt_episodes=int(cfg.adaptation_episodes),
                                           eval_episodes=int(cfg.evaluation_episodes))}
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    print(format_protocol_table(result))
    print(f"wrote {out_dir / 'eval.json'}")
    return result


def score_policy(cfg: DictConfig) -> dict:
    """The summary of ``policy=NAME`` on env's held-out tasks (eval.json's numbers): the env and its
    task distribution from dmrl's config groups, the tasks a checkpoint of that env meets at this seed."""
    from dmrl.evaluation import meta_test
    from dmrl.learner import MetaTestBudget

    name = eval_source(cfg)
    policy, env, distribution = make_policy(cfg)
    budget = MetaTestBudget(episodes=cfg.episodes)
    result = meta_test(policy, env, distribution, num_tasks=int(cfg.num_tasks), seed=int(cfg.seed), budget=budget)
    return {"policy": name, **result}


def policy_job(cfg: DictConfig) -> dict:
    """``policy=random``: :func:`score_policy`, then the usual eval files."""
    from dmrl.evaluation import format_table, write_report

    env_name = HydraConfig.get().runtime.choices.get("env")
    result = score_policy(cfg)
    result = {"policy": result.pop("policy"), "env": env_name, **result}
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    paths = write_report(result, out_dir)
    print(f"{result['num_tasks']} held-out tasks of env={env_name} (seed {int(cfg.seed)}), policy={result['policy']}, "
          f"{result['episodes_per_task']} episodes per task")
    print(format_table(result))
    print("wrote " + ", ".join(str(p) for p in paths))
    if cfg.video:
        print(f"dmrl-eval: note: video=true films gradient-based learners only; policy={result['policy']} "
              "writes its numbers")
    return result


def checkpoint_job(cfg: DictConfig) -> dict:
    from dmrl.evaluation import evaluate, format_table, write_report
    from dmrl.learner import MetaTestBudget

    parts, state, ckpt = load_learner(cfg)
    if cfg.exploration_trajectories is not None and not getattr(parts.algo, "EXPLORES", False):
        raise ConfigError(f"exploration_trajectories: only PEARL's meta-test explores with z from the prior; this "
                          f"checkpoint's learner is {type(parts.algo).__name__} (leave it null)")
    recorder = None
    messages: list[str] = []
    if cfg.video and not parts.algo.FILMS:
        messages.append(f"note: video=true films gradient-based learners only; this {type(parts.algo).__name__} "
                        "evaluation writes its numbers")
    elif cfg.video:
        from dmrl.video import Recorder

        recorder = Recorder(parts.env, int(cfg.video_tasks))
    budget = MetaTestBudget(steps=int(cfg.adapt_steps), episodes=cfg.episodes, later_lr_scale=float(cfg.later_lr_scale),
                            lr_scale=float(cfg.lr_scale), exploration=cfg.exploration_trajectories)
    result = evaluate(parts, num_tasks=int(cfg.num_tasks), seed=int(cfg.seed), budget=budget, recorder=recorder)
    result = {"checkpoint": str(ckpt), "iteration": int(state["iteration"]), **result}
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    if recorder is not None:
        from dmrl.video import write_videos

        result["videos"], video_messages = write_videos(recorder, out_dir, post_step=int(cfg.adapt_steps))
        messages += video_messages
    paths = write_report(result, out_dir)
    print(f"{result['num_tasks']} held-out tasks, checkpoint {ckpt} (iteration {result['iteration']})")
    print(format_table(result))
    videos = sorted({out_dir / v["path"] for v in result.get("videos", [])})
    print("wrote " + ", ".join(str(p) for p in [*paths, *videos]))
    for message in messages:  # "note: ..." to stdout, "warning: ..." as one line on stderr
        print(f"dmrl-eval: {message}", file=sys.stderr if message.startswith("warning") else sys.stdout)
    return result


HELP = """Meta-test a checkpoint: rebuild its learner, env and task family from the config stored in
the checkpoint (checked first: a checkpoint never runs code), adapt to held-out tasks, and write
eval.json, eval.csv and adaptation.png into the eval dir.

Without a checkpoint, policy=random scores a uniformly random policy (uniform over the env's action
range or its discrete actions) on the held-out tasks a checkpoint of env=ENV meets at the same seed,
with the same files; on bandit and tabular_mdp, next to the classic baselines. For example:
  dmrl-eval env=point_nav policy=random num_tasks=100 seed=0"""


# dmrl-eval's policy group holds policies without a checkpoint; a network dmrl-train learns
# (its algo's, algo/policy=...) is scored from its checkpoint
CHOICES = {"policy": (lambda option: option in EVAL_POLICIES,
                      "a trained policy is scored from its checkpoint (checkpoint=PATH)")}


def main() -> None:
    run("dmrl-eval", "eval", EVAL_RULES, eval_job, check=check_source, choices=CHOICES,
        help=help_text("dmrl-eval", "eval", HELP,
                       "dmrl-eval checkpoint=outputs/train/DATE/TIME/checkpoints/last.pt num_tasks=100 adapt_steps=3",
                       CHOICES))


if __name__ == "__main__":
    main()
