"""dmrl-train: meta-train a policy (``dmrl-train env=point_nav algo=maml``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from dmrl.cli.app import discard_if_empty, run
from dmrl.config import TRAIN_RULES
from dmrl.errors import ConfigError
from dmrl.stored import stored_config

# What a resumed run may change, when typed on the command line; everything else comes from the
# checkpoint so that the run continues exactly as it started.
RUNTIME_KEYS = ("iterations", "device", "checkpoint", "logger", "final_eval")


def _is_runtime(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RUNTIME_KEYS)


def resume_config(cfg: DictConfig, saved_yaml: str, typed: list[str], source: str = "checkpoint") -> DictConfig:
    """The checkpoint's config, with the runtime keys the user typed (``typed``: the overrides).

    Other typed overrides cannot apply to a run that must continue exactly; each is reported.
    """
    saved = stored_config(saved_yaml, source)
    for override in typed:
        key, _, value = override.lstrip("+~").partition("=")
        if key == "resume" or key.startswith("hydra"):
            continue
        if _is_runtime(key):
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True, merge=False)
        elif OmegaConf.select(saved, key, default=None) != OmegaConf.select(cfg, key, default=None):
            print(f"dmrl-train: warning: resume ignores {override}: a resumed run keeps its checkpoint's "
                  f"{key} (only {', '.join(RUNTIME_KEYS)} may change)", file=sys.stderr)
    for key in RUNTIME_KEYS:  # keys newer than the checkpoint take today's values
        if OmegaConf.select(saved, key, default=None) is None and OmegaConf.select(cfg, key, default=None) is not None:
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True, merge=False)
    OmegaConf.update(saved, "resume", cfg.resume, force_add=True)
    return saved


def _training_part(config: dict) -> dict:
    """The keys that decide what a run computes (runtime keys and ``resume`` dropped)."""
    return {k: v for k, v in config.items() if k not in RUNTIME_KEYS and k != "resume"}


def _first_difference(a: Any, b: Any, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
    return f"{prefix.rstrip('.')}: {a} there, {b} now"


def previous_run(cfg: DictConfig, run_dir: Path) -> tuple[dict | None, dict | None]:
    """What a re-launched sweep job finds in its run dir: (summary of a finished run, checkpoint to resume).

    Both are None for a fresh job. A run dir that holds a run of another config (the grid changed
    under the same ``hydra.sweep.dir``) is an error rather than a silent restart or a wrong skip.
    """
    from dmrl.checkpoint import load_checkpoint
    from dmrl.loop import CHECKPOINT_DIR
    from dmrl.summary import FINISHED, read_summary

    ckpt = run_dir / CHECKPOINT_DIR / "last.pt"
    if not ckpt.is_file():
        return None, None
    state = load_checkpoint(ckpt)
    stored = _training_part(OmegaConf.to_container(stored_config(state["config"], f"checkpoint {ckpt}"), resolve=True))
    now = _training_part(OmegaConf.to_container(cfg, resolve=True))
    if stored != now:
        raise ConfigError(f"hydra.sweep.dir: {run_dir} already holds a run of another config "
                          f"({_first_difference(stored, now)}); re-launch the same sweep or choose a new hydra.sweep.dir")
    summary = read_summary(run_dir)
    if summary is not None and summary.get("status") == FINISHED and int(state["iteration"]) >= int(cfg.iterations):
        return summary, None
    return None, state


def _overrides(run_dir: Path) -> list[str]:
    """The command line that made the run (a resumed run keeps its first command's)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if path.is_file():
        return [str(o) for o in OmegaConf.load(path)]
    return [str(o) for o in HydraConfig.get().overrides.task]


def train_job(cfg: DictConfig) -> float:
    from dmrl.build import build
    from dmrl.checkpoint import load_checkpoint
    from dmrl.loop import CHECKPOINT_DIR, restore, train

    t_start = time.perf_counter()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    state = None
    if cfg.resume:
        ckpt = Path(cfg.resume).expanduser().resolve()
        state = load_checkpoint(ckpt)
        cfg = resume_config(cfg, state["config"], list(HydraConfig.get().overrides.task), f"checkpoint {ckpt}")
        if ckpt.parent.name == CHECKPOINT_DIR:  # continue the original run dir
            run_dir = ckpt.parent.parent
    sweep_job = not cfg.resume and HydraConfig.get().mode == RunMode.MULTIRUN
    if sweep_job:  # a re-launched sweep: skip or resume this job
        finished, state = previous_run(cfg, run_dir)
        if finished is not None:
            print(f"already finished: {run_dir} (iteration {finished.get('iteration')}); not run again")
            objective = finished.get("objective")
            return float("nan") if objective is None else float(objective)
    parts = build(cfg)
    start = restore(parts, state) if state is not None else (0, 0)
    if run_dir != Path(HydraConfig.get().runtime.output_dir):  # resumed into the original run dir
        discard_if_empty(Path(HydraConfig.get().runtime.output_dir))
    if state is not None:
        print(f"resuming {cfg.resume or run_dir / CHECKPOINT_DIR / 'last.pt'} at iteration {start[0]} into {run_dir}",
              file=sys.stderr)
    try:
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
        if not record and sweep_job and start[0] > 0:  # killed after its last iteration: evaluate and summarize
            from dmrl.loggers.run_logger import METRICS_FILE, read_metrics

            record = read_metrics(run_dir / METRICS_FILE)[-1]
        heldout = _final_eval(parts, cfg) if record else None
    except Exception as e:  # listed as failed by dmrl-report; Ctrl-C and kills leave the run unfinished instead
        from dmrl.summary import FAILED, write_summary

        error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        write_summary(run_dir, {"status": FAILED, "error": error, "overrides": _overrides(run_dir),
                                "wall_time_s": time.perf_counter() - t_start})
        raise
    if record:
        objective = _write_finished_summary(run_dir, record, heldout, time.perf_counter() - t_start)
        print(f"done: iteration {record['iteration']}, env_steps {record['env_steps']}, return pre-adapt "
              f"{record['meta_train/return_pre_adapt']:.3f}, post-adapt {record['meta_train/return_post_adapt']:.3f}")
        if heldout is not None:
            print(f"held-out ({heldout['num_tasks']} tasks): {objective_of(heldout, record)[0]} {objective:.3f}")
        print(f"run dir: {run_dir}\ncheckpoint: {run_dir / CHECKPOINT_DIR / 'last.pt'}")
        return objective
    print(f"nothing to do: the checkpoint is already at iteration {start[0]} >= iterations={cfg.iterations}")
    return float("nan")


def _final_eval(parts, cfg: DictConfig) -> dict | None:
    """Adapt to held-out tasks with the trained meta-policy: the sweep's objective, less noisy and
    less biased than the last training meta-batch's return."""
    from dmrl.evaluation import evaluate

    num_tasks = int(cfg.final_eval.num_tasks)
    if num_tasks == 0:
        return None
    steps = int(OmegaConf.select(cfg, "algo.inner_steps", default=1))  # gradient-based learners adapt this many steps
    result = evaluate(parts, num_tasks=num_tasks, adapt_steps=steps, seed=int(cfg.final_eval.seed), episodes=None)
    return {"seed": int(cfg.final_eval.seed), **{k: v for k, v in result.items() if not k.startswith("per_task")}}


def objective_of(heldout: dict | None, record: dict) -> tuple[str, float]:
    """The job's objective: the held-out return after adapting (the trial's return for RL²)."""
    if heldout is None:
        return "meta_train/return_post_adapt", float(record["meta_train/return_post_adapt"])
    if "trial_return_mean" in heldout:
        return "heldout/trial_return", float(heldout["trial_return_mean"])
    return "heldout/return_post_adapt", float(heldout["return_mean"][-1])


def _write_finished_summary(run_dir: Path, record: dict, heldout: dict | None, wall_s: float) -> float:
    """Write ``summary.json`` of a finished run; returns the job's objective."""
    from dmrl.loggers.run_logger import METRICS_FILE, read_metrics
    from dmrl.summary import FINISHED, write_summary

    name, objective = objective_of(heldout, record)
    records = read_metrics(run_dir / METRICS_FILE)
    write_summary(run_dir, {
        "status": FINISHED,
        "objective": objective,
        "objective_name": name,
        "iteration": int(record["iteration"]),
        "env_steps": int(record["env_steps"]),
        "wall_time_s": wall_s,  # this job's wall clock (a resumed run: since its last launch)
        "train_time_s": sum(r.get("time/iteration_s", 0.0) for r in records),  # every meta-iteration, resumes included
        "final": record,
        "heldout": heldout,
        "overrides": _overrides(run_dir),
    })
    return objective


def main() -> None:
    run("dmrl-train", "train", TRAIN_RULES, train_job)


if __name__ == "__main__":
    main()
