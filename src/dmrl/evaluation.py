"""Meta-test: adapt to held-out tasks and report how fast the return improves.

Held-out tasks come from the ``test`` stream of the task distribution (disjoint from training)
and are fixed by the evaluation seed, so two checkpoints are compared on the same tasks.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from dmrl.build import Parts
from dmrl.tasks.distributions import task_rng


def summarize(curve: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over tasks and the half-width of its normal 95% interval.  # curve [steps, tasks]"""
    n = curve.shape[1]
    mean = curve.mean(axis=1)
    sem = curve.std(axis=1, ddof=1) / math.sqrt(n) if n > 1 else np.zeros_like(mean)
    return mean, 1.96 * sem


def evaluate(parts: Parts, *, num_tasks: int, adapt_steps: int, seed: int, episodes: int | None,
             recorder=None) -> dict:
    """The adaptation curve on ``num_tasks`` held-out tasks.

    ``recorder`` (a :class:`dmrl.video.Recorder` of ``parts.env``), when given, stands in for the
    sampler's env during the rollouts and keeps episodes for videos; the numbers are unchanged.
    """
    parts.algo.sampler.seed(seed)
    tasks = parts.tasks.sample(num_tasks, task_rng(seed, "test"))
    sampler = parts.algo.sampler
    env = sampler.env
    if recorder is not None:
        sampler.env = recorder
    try:
        curve = parts.algo.adaptation_curve(tasks, adapt_steps, episodes)  # [K + 1, num_tasks]
    finally:
        sampler.env = env
    mean, ci = summarize(curve)
    return {
        "adapt_steps": list(range(adapt_steps + 1)),
        "return_mean": [float(x) for x in mean],
        "return_ci95": [float(x) for x in ci],
        "num_tasks": int(num_tasks),
        "per_task_returns": curve.T.tolist(),
    }


def write_report(result: dict, out_dir: Path) -> list[Path]:
    """``eval.json``, ``eval.csv`` and ``adaptation.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "eval.json", out_dir / "eval.csv", out_dir / "adaptation.png"]
    paths[0].write_text(json.dumps(result, indent=2) + "\n")
    with open(paths[1], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["adapt_steps", "return_mean", "return_ci95", "num_tasks"])
        for k, m, c in zip(result["adapt_steps"], result["return_mean"], result["return_ci95"]):
            w.writerow([k, f"{m:.6g}", f"{c:.6g}", result["num_tasks"]])
    plot_adaptation(result, paths[2])
    return paths


def plot_adaptation(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.asarray(result["adapt_steps"])
    mean, ci = np.asarray(result["return_mean"]), np.asarray(result["return_ci95"])
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ax.plot(steps, mean, marker="o")
    ax.fill_between(steps, mean - ci, mean + ci, alpha=0.25, label="95% interval")
    ax.set_xlabel("inner gradient steps")
    ax.set_ylabel("mean episode return")
    ax.set_xticks(steps)
    ax.set_title(f"adaptation on {result['num_tasks']} held-out tasks")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def format_table(result: dict) -> str:
    lines = [f"{'steps':>5}  {'return':>10}  {'ci95':>8}"]
    for k, m, c in zip(result["adapt_steps"], result["return_mean"], result["return_ci95"]):
        lines.append(f"{k:>5}  {m:>10.3f}  {c:>8.3f}")
    return "\n".join(lines)
