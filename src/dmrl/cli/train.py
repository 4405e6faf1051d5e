"""dmrl-train: meta-train a policy (``dmrl-train env=point_nav algo=maml``)."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dmrl.cli.app import discard_if_empty, run
from dmrl.config import TRAIN_RULES

# What a resumed run may change, when typed on the command line; everything else comes from the
# checkpoint so that the run continues exactly as it started.
RUNTIME_KEYS = ("iterations", "device", "checkpoint", "logger")


def _is_runtime(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RUNTIME_KEYS)


def resume_config(cfg: DictConfig, saved_yaml: str, typed: list[str]) -> DictConfig:
    """The checkpoint's config, with the runtime keys the user typed (``typed``: the overrides).

    Other typed overrides cannot apply to a run that must continue exactly; each is reported.
    """
    saved = OmegaConf.create(saved_yaml)
    for override in typed:
        key, _, value = override.lstrip("+~").partition("=")
        if key == "resume" or key.startswith("hydra"):
            continue
        if _is_runtime(key):
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True, merge=False)
        elif OmegaConf.select(saved, key, default=None) != OmegaConf.select(cfg, key, default=None):
            print(f"dmrl-train: warning: resume ignores {override}: a resumed run keeps its checkpoint's "
                  f"{key} (only {', '.join(RUNTIME_KEYS)} may change)", file=sys.stderr)
    OmegaConf.update(saved, "resume", cfg.resume, force_add=True)
    return saved


def train_job(cfg: DictConfig) -> float:
    from dmrl.build import build
    from dmrl.checkpoint import load_checkpoint
    from dmrl.loop import CHECKPOINT_DIR, restore, train

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    state = None
    if cfg.resume:
        ckpt = Path(cfg.resume).expanduser().resolve()
        state = load_checkpoint(ckpt)
        cfg = resume_config(cfg, state["config"], list(HydraConfig.get().overrides.task))
        if ckpt.parent.name == CHECKPOINT_DIR:  # continue the original run dir
            run_dir = ckpt.parent.parent
    parts = build(cfg)
    start = restore(parts, state) if state is not None else (0, 0)
    if run_dir != Path(HydraConfig.get().runtime.output_dir):  # resumed into the original run dir
        discard_if_empty(Path(HydraConfig.get().runtime.output_dir))
    if state is not None:
        print(f"resuming {cfg.resume} at iteration {start[0]} into {run_dir}", file=sys.stderr)
    record = train(
        parts,
        iterations=int(cfg.iterations),
        run_dir=run_dir,
        checkpoint_every=int(cfg.checkpoint.every),
        checkpoint_keep=int(cfg.checkpoint.keep),
        tensorboard=bool(cfg.logger.tensorboard),
        progress=bool(cfg.logger.progress),
        start=start,
    )
    if record:
        print(f"done: iteration {record['iteration']}, env_steps {record['env_steps']}, return pre-adapt "
              f"{record['meta_train/return_pre_adapt']:.3f}, post-adapt {record['meta_train/return_post_adapt']:.3f}")
        print(f"run dir: {run_dir}\ncheckpoint: {run_dir / CHECKPOINT_DIR / 'last.pt'}")
        return float(record["meta_train/return_post_adapt"])
    print(f"nothing to do: the checkpoint is already at iteration {start[0]} >= iterations={cfg.iterations}")
    return float("nan")


def main() -> None:
    run("dmrl-train", "train", TRAIN_RULES, train_job)


if __name__ == "__main__":
    main()
