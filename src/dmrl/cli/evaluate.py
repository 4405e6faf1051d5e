"""dmrl-eval: adapt a checkpoint to held-out tasks (``dmrl-eval checkpoint=PATH``)."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dmrl.cli.app import help_text, run
from dmrl.config import EVAL_RULES, validate
from dmrl.stored import stored_config


def eval_job(cfg: DictConfig) -> dict:
    from dmrl.build import build
    from dmrl.checkpoint import load_checkpoint, restore_state
    from dmrl.evaluation import evaluate, format_table, write_report
    from dmrl.learner import MetaTestBudget

    validate(cfg, EVAL_RULES)
    ckpt = Path(cfg.checkpoint).expanduser().resolve()
    state = load_checkpoint(ckpt)
    config = stored_config(state["config"], f"checkpoint {ckpt}")  # checked before anything is built
    parts = build(config, device=cfg.device)  # the checkpoint's config, never today's defaults
    restore_state(parts.algo, {"algo": state["algo"]}, ckpt)  # the learner only: eval seeds its own streams
    recorder = None
    messages: list[str] = []
    if cfg.video and not parts.algo.FILMS:
        messages.append(f"note: video=true films gradient-based learners only; this {type(parts.algo).__name__} "
                        "evaluation writes its numbers")
    elif cfg.video:
        from dmrl.video import Recorder

        recorder = Recorder(parts.env, int(cfg.video_tasks))
    budget = MetaTestBudget(steps=int(cfg.adapt_steps), episodes=cfg.episodes, later_lr_scale=float(cfg.later_lr_scale))
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
eval.json, eval.csv and adaptation.png into the eval dir."""


def main() -> None:
    run("dmrl-eval", "eval", EVAL_RULES, eval_job,
        help=help_text("dmrl-eval", "eval", HELP,
                       "dmrl-eval checkpoint=outputs/train/DATE/TIME/checkpoints/last.pt num_tasks=100 adapt_steps=3"))


if __name__ == "__main__":
    main()
