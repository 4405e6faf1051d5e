"""dmrl-eval: adapt a checkpoint to held-out tasks (``dmrl-eval checkpoint=PATH``)."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dmrl.cli.app import run
from dmrl.config import EVAL_RULES, validate


def eval_job(cfg: DictConfig) -> dict:
    from dmrl.build import build
    from dmrl.checkpoint import load_checkpoint
    from dmrl.evaluation import evaluate, format_table, write_report

    validate(cfg, EVAL_RULES)
    ckpt = Path(cfg.checkpoint).expanduser().resolve()
    state = load_checkpoint(ckpt)
    parts = build(OmegaConf.create(state["config"]), device=cfg.device)  # the checkpoint's config
    parts.algo.load_state_dict(state["algo"])
    result = evaluate(parts, num_tasks=int(cfg.num_tasks), adapt_steps=int(cfg.adapt_steps), seed=int(cfg.seed),
                      episodes=cfg.episodes)
    result = {"checkpoint": str(ckpt), "iteration": int(state["iteration"]), **result}
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    paths = write_report(result, out_dir)
    print(f"{result['num_tasks']} held-out tasks, checkpoint {ckpt} (iteration {result['iteration']})")
    print(format_table(result))
    print("wrote " + ", ".join(str(p) for p in paths))
    return result


def main() -> None:
    run("dmrl-eval", "eval", EVAL_RULES, eval_job)


if __name__ == "__main__":
    main()
