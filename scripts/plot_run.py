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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, default=None, help="PNG path (default: RUN_DIR/learning_curve.png)")
    p.add_argument("--smooth", type=int, default=10, help="moving-average window in iterations")
    args = p.parse_args()
    records = read_metrics(args.run_dir / METRICS_FILE)
    steps = np.array([r["env_steps"] for r in records]) / 1e6
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    for key, label in (("meta_train/return_pre_adapt", "before adaptation"),
                       ("meta_train/return_post_adapt", "after 1 inner step")):
        y = np.array([r[key] for r in records])
        ax.plot(steps, y, alpha=0.25)
        ax.plot(steps, smooth(y, args.smooth), label=label, color=ax.lines[-1].get_color())
    ax.set_xlabel("environment steps (millions)")
    ax.set_ylabel("mean episode return (meta-batch)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = args.out or args.run_dir / "learning_curve.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    print(out)


if __name__ == "__main__":
    main()
