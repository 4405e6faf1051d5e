#!/usr/bin/env python
"""Plot a run's learning curve (pre/post-adaptation return vs env steps) from its metrics.jsonl.

    python scripts/plot_run.py outputs/train/<date>/<time> --out docs/point_nav_training.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dmrl.loggers.run_logger import METRICS_FILE, read_metrics  # noqa: E402


def smooth(x: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(x) < window:
        return x
    kernel = np.ones(window) / window
    return np.convolve(np.pad(x, (window - 1, 0), mode="edge"), kernel, mode="valid")


def post_adapt_label(records: list[dict]) -> str:
    """What ``meta_train/return_post_adapt`` is in this run: after K inner steps (MAML, K from the
    ``meta_train/return_step<K>`` records) or the last episode of a trial (RL², ``return_episode<E>``)."""
    keys = {k for r in records for k in r}
    steps = [int(k.rsplit("step", 1)[1]) for k in keys if k.startswith("meta_train/return_step") and
             k.rsplit("step", 1)[1].isdigit()]
    episodes = [int(k.rsplit("episode", 1)[1]) for k in keys if k.startswith("meta_train/return_episode") and
                k.rsplit("episode", 1)[1].isdigit()]
    if steps:
        k = max(steps)
        return f"after {k} inner step{'s' if k != 1 else ''}"
    if episodes:
        return f"last episode of the trial (episode {max(episodes) + 1})"
    return "after adaptation"


def pre_adapt_label(records: list[dict]) -> str:
    keys = {k for r in records for k in r}
    return "first episode of the trial" if any(k.startswith("meta_train/return_episode") for k in keys) \
        else "before adaptation (0 inner steps)"


def plot(records: list[dict], out: Path, window: int, heading: str):
    """The figure (saved and closed)."""
    from dmrl.report import steps_scale

    env_steps = np.array([r["env_steps"] for r in records], dtype=float)
    div, xlabel = steps_scale(float(env_steps.max()) if len(env_steps) else 0.0)
    steps = env_steps / div
    window = window if len(records) >= window > 1 else 1  # smooth() leaves shorter runs as they are
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=120, layout="constrained")
    for key, label in (("meta_train/return_pre_adapt", pre_adapt_label(records)),
                       ("meta_train/return_post_adapt", post_adapt_label(records))):
        y = np.array([r[key] for r in records], dtype=float)
        ax.plot(steps, y, alpha=0.25)
        ax.plot(steps, smooth(y, window), label=label, color=ax.lines[-1].get_color())
    ax.set_xlabel(xlabel)
    ax.ticklabel_format(axis="x", style="plain", useOffset=False)
    ax.set_ylabel("mean episode return (meta-batch)")
    smoothing = f"solid: moving average over {window} iterations" if window > 1 else "not smoothed"
    ax.set_title(f"{heading}: training curve of one run\n{smoothing}; one seed, no interval", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return fig


def main() -> None:
    from dmrl.report import plot_heading, run_labels

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, default=None, help="PNG path (default: RUN_DIR/learning_curve.png)")
    p.add_argument("--smooth", type=int, default=10, help="moving-average window in iterations")
    args = p.parse_args()
    records = read_metrics(args.run_dir / METRICS_FILE)
    out = args.out or args.run_dir / "learning_curve.png"
    plot(records, out, args.smooth, plot_heading(*run_labels(args.run_dir)))
    print(out)

if __name__ == "__main__":
    main()
