"""From run dirs to a result: runs grouped by config, mean and 95% bootstrap interval across seeds.

Only finished runs are averaged. Failed and unfinished runs (killed, preempted, still running) are
listed next to the table, so a config whose bad seeds crashed cannot look better than it is.

The interval is the percentile bootstrap of the mean over seeds (Efron & Tibshirani 1993, ch. 13):
resample the seeds with replacement, take the mean, read the 2.5% and 97.5% quantiles. With few
seeds it is narrow and optimistic (Agarwal et al. 2021, "Deep RL at the edge of the statistical
precipice"); it is reported with its number of seeds. A fixed generator makes a report
reproducible.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from dmrl.loggers.run_logger import METRICS_FILE, read_metrics
from dmrl.summary import FAILED, FINISHED, SUMMARY_FILE, read_summary

RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
LEVEL = 0.95
# Overrides that do not change what a run computes: runs that differ only in these are seeds of one config.
NOT_CONFIG = ("seed", "launcher", "hparams_search", "logger", "checkpoint", "device", "resume")
UNFINISHED = "unfinished"
REPORT_DIR = "report"


@dataclass
class Run:
    path: Path
    status: str  # finished | failed | unfinished
    overrides: list[str]
    summary: dict | None
    metrics: list[dict] = field(default_factory=list)

    @property
    def config(self) -> str:
        """The run's config as the overrides that define it (seed and runtime keys left out)."""
        keep = [o for o in self.overrides if o.split("=", 1)[0].lstrip("+~").split(".")[0] not in NOT_CONFIG]
        return " ".join(sorted(keep)) or "(defaults)"

    @property
    def seed(self) -> str:
        return next((o.split("=", 1)[1] for o in self.overrides if o.startswith("seed=")), "0")

    @property
    def iteration(self) -> int:
        return int(self.metrics[-1]["iteration"]) if self.metrics else 0

    @property
    def error(self) -> str:
        return str((self.summary or {}).get("error", ""))


def _is_run_dir(d: Path) -> bool:
    return (d / METRICS_FILE).is_file() or (d / SUMMARY_FILE).is_file() or (d / ".hydra" / "overrides.yaml").is_file()


def find_run_dirs(root: Path) -> list[Path]:
    """``root`` itself when it is a run dir, else every run dir below it (a sweep dir, or several)."""
    if _is_run_dir(root):
        return [root]
    found = []
    for here, dirs, _ in os.walk(root):
        d = Path(here)
        if d != root and _is_run_dir(d):
            found.append(d)
            dirs.clear()  # a run dir holds no other runs
        else:
            dirs[:] = sorted(x for x in dirs if x != REPORT_DIR and not x.startswith("."))
    return sorted(found, key=lambda p: [int(s) if s.isdigit() else s for s in p.parts])


def load_run(path: Path) -> Run:
    summary = read_summary(path)
    metrics = read_metrics(path / METRICS_FILE) if (path / METRICS_FILE).is_file() else []
    if summary is not None and summary.get("status") in (FINISHED, FAILED):
        status, overrides = summary["status"], [str(o) for o in summary.get("overrides", [])]
    else:
        status, summary = UNFINISHED, None
        ov = path / ".hydra" / "overrides.yaml"
        overrides = [str(o) for o in OmegaConf.load(ov)] if ov.is_file() else []
    return Run(path=path, status=status, overrides=overrides, summary=summary, metrics=metrics)


def bootstrap_ci(values: np.ndarray, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED,
                 level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap interval of the mean over the first axis.  # values [seeds, ...]

    NaN where there are fewer than two seeds: one seed has no spread to resample.
    """
    values = np.asarray(values, dtype=float)
    n = values.shape[0]
    if n < 2:
        nan = np.full(values.shape[1:], np.nan)
        return nan, nan.copy()
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    counts = (idx[:, :, None] == np.arange(n)).sum(axis=1)  # [resamples, seeds]: how often each seed was drawn
    means = np.tensordot(counts, values, axes=(1, 0)) / n  # [resamples, ...]
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail], axis=0)
    return lo, hi


def heldout_curve(run: Run) -> list[float] | None:
    """Held-out return after 0..K inner steps (MAML), or of each episode of a trial (RL²)."""
    heldout = (run.summary or {}).get("heldout") or {}
    return heldout.get("return_mean") or heldout.get("episode_return_mean")


# (column, label, digits, how to read it from a finished run)
METRICS = (
    ("objective", "objective", 3, lambda r: r.summary.get("objective")),
    ("heldout_pre_adapt", "held-out return before adapting", 3, lambda r: (heldout_curve(r) or [None])[0]),
    ("train_post_adapt", "last meta-batch return, post-adapt", 3,
     lambda r: (r.summary.get("final") or {}).get("meta_train/return_post_adapt")),
    ("env_steps", "env steps", 0, lambda r: r.summary.get("env_steps")),
    ("train_time_s", "train time (s)", 1, lambda r: r.summary.get("train_time_s")),
)


@dataclass
class Group:
    config: str
    runs: list[Run]  # finished runs only
    stats: dict[str, tuple[float, float, float, int]]  # column -> (mean, ci low, ci high, seeds)


def group_runs(runs: list[Run]) -> list[Group]:
    by_config: dict[str, list[Run]] = {}
    for run in runs:
        if run.status == FINISHED:
            by_config.setdefault(run.config, []).append(run)
    groups = []
    for config, members in by_config.items():
        stats = {}
        for column, _, _, read in METRICS:
            vals = [read(r) for r in members]
            vals = np.array([v for v in vals if v is not None], dtype=float)
            if len(vals):
                lo, hi = bootstrap_ci(vals)
                stats[column] = (float(vals.mean()), float(lo), float(hi), len(vals))
        groups.append(Group(config, members, stats))
    return sorted(groups, key=lambda g: g.config)


def _cell(stat: tuple[float, float, float, int] | None, digits: int) -> str:
    if stat is None:
        return "-"
    mean, lo, hi, _ = stat
    return f"{mean:.{digits}f}" if math.isnan(lo) else f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def objective_name(runs: list[Run]) -> str:
    names = {r.summary.get("objective_name") for r in runs if r.status == FINISHED}
    return names.pop() if len(names) == 1 else "objective"


def markdown_table(groups: list[Group], objective: str) -> str:
    labels = [objective if c == "objective" else label for c, label, _, _ in METRICS]
    lines = ["| config | seeds | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for g in groups:
        cells = [_cell(g.stats.get(c), digits) for c, _, digits, _ in METRICS]
        lines.append(f"| {g.config} | {len(g.runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def not_averaged(runs: list[Run]) -> list[Run]:
    return [r for r in runs if r.status != FINISHED]


def excluded_table(runs: list[Run]) -> str:
    lines = ["| run | status | config | seed | last iteration | error |", "|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r.path} | {r.status} | {r.config} | {r.seed} | {r.iteration} | {r.error.replace('|', '/')} |")
    return "\n".join(lines)


def write_csv(groups: list[Group], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        header = ["config", "seeds"]
        for c, _, _, _ in METRICS:
            header += [f"{c}_mean", f"{c}_ci95_low", f"{c}_ci95_high"]
        w.writerow(header)
        for g in groups:
            row: list = [g.config, len(g.runs)]
            for c, _, _, _ in METRICS:
                s = g.stats.get(c)
                row += ["" if s is None or math.isnan(x) else f"{x:.6g}" for x in (s[:3] if s else (math.nan,) * 3)]
            w.writerow(row)


def write_runs_csv(runs: list[Run], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "status", "config", "seed", "last_iteration", "objective", "error"])
        for r in runs:
            obj = (r.summary or {}).get("objective") if r.status == FINISHED else None
            w.writerow([str(r.path), r.status, r.config, r.seed, r.iteration, "" if obj is None else f"{obj:.6g}", r.error])


def learning_curves(group: Group, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Mean env steps, mean return and its interval per iteration over the group's seeds (common length)."""
    curves = [r.metrics for r in group.runs if r.metrics]
    if not curves:
        return None
    t = min(len(c) for c in curves)
    y = np.array([[rec.get(key, np.nan) for rec in c[:t]] for c in curves], dtype=float)  # [seeds, T]
    x = np.array([[rec["env_steps"] for rec in c[:t]] for c in curves], dtype=float).mean(axis=0)
    lo, hi = bootstrap_ci(y)
    return x, y.mean(axis=0), lo, hi


def plot_learning_curves(groups: list[Group], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=110, sharey=True)
    for ax, key, title in zip(axes, ("meta_train/return_pre_adapt", "meta_train/return_post_adapt"),
                              ("before adaptation", "after the inner steps")):
        for g in groups:
            curve = learning_curves(g, key)
            if curve is None:
                continue
            x, mean, lo, hi = curve
            line, = ax.plot(x, mean, label=f"{g.config} ({len(g.runs)} seeds)")
            if not np.isnan(lo).all():
                ax.fill_between(x, lo, hi, alpha=0.2, color=line.get_color())
        ax.set_title(f"meta-batch return {title}")
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean episode return")
    fig.suptitle("mean over seeds; bands: 95% bootstrap interval", fontsize=9)
    axes[1].legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def adaptation_curves(group: Group) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Held-out return after 0..K inner steps: mean and interval over the group's seeds."""
    rows = [c for c in map(heldout_curve, group.runs) if c]
    if not rows:
        return None
    k = min(len(x) for x in rows)
    y = np.array([x[:k] for x in rows], dtype=float)
    lo, hi = bootstrap_ci(y)
    return np.arange(k), y.mean(axis=0), lo, hi


def plot_adaptation(groups: list[Group], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    drawn = False
    for g in groups:
        curve = adaptation_curves(g)
        if curve is None:
            continue
        steps, mean, lo, hi = curve
        line, = ax.plot(steps, mean, marker="o", label=f"{g.config} ({len(g.runs)} seeds)")
        if not np.isnan(lo).all():
            ax.fill_between(steps, lo, hi, alpha=0.2, color=line.get_color())
        drawn = True
    if drawn:
        ax.set_xlabel("inner gradient steps (MAML) or episode of the trial - 1 (RL²), held-out tasks")
        ax.set_ylabel("mean episode return (95% bootstrap over seeds)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)
        fig.tight_layout()
        fig.savefig(path)
    plt.close(fig)
    return drawn


def write_report(runs: list[Run], out: Path) -> tuple[str, list[Path]]:
    """Write the markdown, CSV and PNG files into ``out``; returns the text to print and the paths."""
    out.mkdir(parents=True, exist_ok=True)
    groups = group_runs(runs)
    objective = objective_name(runs)
    table = markdown_table(groups, objective)
    excluded = not_averaged(runs)
    paths = [out / "results.md", out / "results.csv", out / "runs.csv", out / "learning_curves.png"]
    write_csv(groups, paths[1])
    write_runs_csv(runs, paths[2])
    plot_learning_curves(groups, paths[3])
    if plot_adaptation(groups, out / "adaptation.png"):
        paths.append(out / "adaptation.png")
    counts = ", ".join(f"{sum(r.status == s for r in runs)} {s}" for s in (FINISHED, FAILED, UNFINISHED))
    text = [f"{len(runs)} runs ({counts}); mean and {LEVEL:.0%} bootstrap interval over seeds "
            f"({RESAMPLES} resamples, seed {BOOTSTRAP_SEED}); objective: {objective}", "", table]
    if excluded:
        text += ["", f"Not averaged ({len(excluded)} failed or unfinished):", "", excluded_table(excluded)]
    md = ["# Sweep report", "", *text, "", "![learning curves](learning_curves.png)"]
    if len(paths) > 4:
        md.append("![adaptation on held-out tasks](adaptation.png)")
    paths[0].write_text("\n".join(md) + "\n")
    return "\n".join(text), paths
