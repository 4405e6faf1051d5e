"""dmrl-train: meta-train a policy (``dmrl-train env=point_nav algo=maml``)."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dmrl.cli.app import run
from dmrl.config import TRAIN_RULES

# Keys a resumed run may change; everything else comes from the checkpoint so that the run
# continues exactly as it started.
RUNTIME_KEYS = ("iterations", "resume", "device", "checkpoint.every", "checkpoint.keep", "logger.tensorboard", "logger.progress")


def _flatten(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def resume_config(cfg: DictConfig, saved_yaml: str) -> DictConfig:
    """The checkpoint's config with this command line's runtime keys; warns about ignored keys."""
    saved = OmegaConf.create(saved_yaml)
    now = _flatten(OmegaConf.to_container(cfg, resolve=True))
    then = _flatten(OmegaConf.to_container(saved, resolve=True))
    for key in sorted(set(now) | set(then)):
        if key not in RUNTIME_KEYS and now.get(key) != then.get(key):
            print(f"dmrl-train: warning: resume keeps the checkpoint's {key}={then.get(key)!r} "
                  f"(the command line gave {now.get(key)!r})", file=sys.stderr)
    for key in RUNTIME_KEYS:
        OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
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
        cfg = resume_config(cfg, state["config"])
        if ckpt.parent.name == CHECKPOINT_DIR:  # continue the original run dir
            run_dir = ckpt.parent.parent
    parts = build(cfg)
    start = restore(parts, state) if state is not None else (0, 0)
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
