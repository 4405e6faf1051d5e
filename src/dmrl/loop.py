"""The one training loop: meta-step, log, checkpoint; resumable to the bit."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from dmrl.build import Parts
from dmrl.checkpoint import (buffers_path, global_rng_state, load_buffers, prune, restore_state, save_buffers,
                             save_checkpoint)
from dmrl.errors import NonFiniteError
from dmrl.loggers.run_logger import RunLogger
from dmrl.rundir import CHECKPOINT_DIR



def stopped(parts: Parts, ckpt_dir: Path) -> str:
    """What to do after a divergence, true to what exists: resume the last good checkpoint with
    smaller steps (resume takes the learner's step-size keys), or start again when none was written."""
    steps = " ".join(f"{k}={_smaller(OmegaConf.select(parts.config, k))}" for k in parts.algo.STEP_SIZE_KEYS
                     if OmegaConf.select(parts.config, k, default=None) is not None)
    last = Path(ckpt_dir) / "last.pt"
    if last.is_file():
        return f"the run stopped; its last good checkpoint {last} is intact: resume it with smaller steps, e.g. " \
               f"dmrl-train resume={last} {steps}"
    return f"the run stopped before its first checkpoint was written: start it again with smaller steps, e.g. {steps}"


def _smaller(value: float) -> float:
    return float(f"{float(value) / 2:.3g}")


def _check_finite(parts: Parts, record: dict, iteration: int, ckpt_dir: Path) -> None:
    bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
    for name, p in parts.policy.named_parameters():
        if not torch.isfinite(p).all():
            bad.append(f"policy.{name}")
    if bad:
        raise NonFiniteError(f"non-finite values at iteration {iteration} ({', '.join(bad[:4])}); "
                             f"{stopped(parts, ckpt_dir)}")


def checkpoint_payload(parts: Parts, config_yaml: str, iteration: int, env_steps: int) -> dict:
    """Everything a resumed run needs: config, algorithm state, counters and every RNG state."""
    return {
        "config": config_yaml,
        "iteration": iteration,
        "env_steps": env_steps,
        "algo": parts.algo.state_dict(),
        "rng": global_rng_state(),
        "tasks": parts.tasks.state_dict(),  # a fixed pool's tasks; nothing for a sampled stream
    }


def restore(parts: Parts, state: dict, path: str | Path = "checkpoint") -> tuple[int, int]:
    """Load algorithm and random states from a checkpoint dict, and the learner's buffers from
    beside it (or say in one line how they are refilled); returns (iteration, env_steps)."""
    restore_state(parts.algo, state, path, parts.tasks)
    if parts.algo.BUFFERS:
        buffers = load_buffers(buffers_path(path), int(state["iteration"]))
        if buffers is None:
            how = parts.algo.refill_buffers()
            print(f"dmrl: resume: no replay buffers beside {path} (written with checkpoint.buffers=false, or "
                  f"removed): {how}; the run goes on, not exactly as an uninterrupted one", file=sys.stderr)
        else:
            parts.algo.load_buffers(buffers)
    return int(state["iteration"]), int(state["env_steps"])


def train(
    parts: Parts,
    *,
    iterations: int,
    run_dir: Path,
    checkpoint_every: int,
    checkpoint_keep: int,
    tensorboard: bool = True,
    progress: bool = True,
    start: tuple[int, int] = (0, 0),
    job: str | None = None,
    buffers: bool = True,
) -> dict[str, float]:
    """Run meta-iterations ``start+1 .. iterations``; returns the last iteration's metrics.
    ``buffers``: write the learner's buffers beside ``last.pt`` (their size and write time are said on
    stderr at the first write and whenever the size has doubled); ``False``: the networks only."""
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / CHECKPOINT_DIR
    iteration, env_steps = start
    config_yaml = OmegaConf.to_yaml(parts.config, resolve=True)
    logger = RunLogger(
        run_dir,
        total_iterations=iterations,
        start_iteration=iteration,
        start_env_steps=env_steps,
        tensorboard=tensorboard,
        progress=progress,
        config_text=config_yaml,
        job=job,
        headline=tuple(parts.algo.HEADLINE),
    )
    record: dict[str, float] = {}
    said = 0  # the buffer size last reported
    try:
        while iteration < iterations:
            t0 = time.perf_counter()
            try:
                metrics = parts.algo.meta_step()
            except NonFiniteError as e:
                raise NonFiniteError(f"{e} at iteration {iteration + 1}; {stopped(parts, ckpt_dir)}") from None
            dt = time.perf_counter() - t0
            iteration += 1
            steps = int(metrics.pop("env_steps"))
            env_steps += steps
            record = {"iteration": iteration, "env_steps": env_steps, "time/iteration_s": dt,
                      "time/env_steps_per_s": steps / dt, **metrics}
            _check_finite(parts, record, iteration, ckpt_dir)
            logger.log(record)
            payload = checkpoint_payload(parts, config_yaml, iteration, env_steps)
            save_checkpoint(ckpt_dir / "last.pt", payload)
            if parts.algo.BUFFERS and buffers:
                size, secs = save_buffers(buffers_path(ckpt_dir / "last.pt"), iteration, parts.algo.buffers_state())
                if size >= 2 * said:
                    said = size
                    print(f"dmrl: replay buffers beside last.pt: {size / 2**20:.1f} MiB, written in {secs:.2f} s each "
                          "iteration (checkpoint.buffers=false writes the networks only)", file=sys.stderr)
            if iteration % checkpoint_every == 0:
                save_checkpoint(ckpt_dir / f"iter_{iteration:06d}.pt", payload)
                prune(ckpt_dir, checkpoint_keep)
    finally:
        logger.close()
    return record
