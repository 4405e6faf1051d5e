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
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from dmrl.loggers.run_logger import METRICS_FILE, read_metrics
from dmrl.summary import FAILED, FINISHED, SUMMARY_FILE, read_summary

RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
LEVEL = 0.95
# Overrides that do not change what a run computes: runs that differ only in these are seeds of one config.
NOT_CONFIG = ("seed", "launcher", "hparams_search", "logger", "checkpoint", "device", "resume")
UNFINISHED = "unfinished"
CORRUPT = "corrupt"  # its summary.json is there but unreadable: neither finished nor unfinished
REPORT_DIR = "report"


@dataclass
class Run:
    path: Path
    status: str  # finished | failed | unfinished | corrupt
    overrides: list[str] | None  # None: unreadable .hydra/overrides.yaml
    summary: dict | None
    metrics: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # one line each: what in this run could not be read
    env: str | None = None  # the env config (point_nav, bandit, ...), when the run dir says
    learner: str | None = None  # MAML or RL²
    last_iteration: int | None = None  # when metrics.jsonl is unreadable: its last readable record's iteration
    problem: str = ""  # why a corrupt run is listed as such

    @property
    def config(self) -> str:
        """The run's config as the overrides that define it (seed and runtime keys left out)."""
        if self.overrides is None:
            return "(unknown: unreadable overrides.yaml)"
        keep = [o for o in self.overrides if o.split("=", 1)[0].lstrip("+~").split(".")[0] not in NOT_CONFIG]
        return " ".join(sorted(keep)) or "(defaults)"

    @property
    def seed(self) -> str:
        return next((o.split("=", 1)[1] for o in self.overrides or [] if o.startswith("seed=")), "?" if
                    self.overrides is None else "0")

    @property
    def iteration(self) -> int:
        if self.metrics:
            return int(self.metrics[-1]["iteration"])
        if self.last_iteration is not None:
            return self.last_iteration
        return int((self.summary or {}).get("iteration") or 0)

    @property
    def error(self) -> str:
        return self.problem or str((self.summary or {}).get("error") or "")


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


def read_run_metrics(path: Path) -> tuple[list[dict], int | None, str | None]:
    """``(records, last readable iteration, warning)`` of a metrics.jsonl.

    A torn last line is dropped (``read_metrics``). Any other unreadable line (a torn middle line,
    a line that is not a metrics record) leaves the run without a learning curve: ``records`` is
    empty and the warning names the file and the line.
    """
    bad = None  # index of the first record that is valid JSON but no metrics record
    try:
        records = read_metrics(path)
    except OSError as e:
        return [], None, f"{path}: cannot be read ({e.strerror or e}); this run's learning curve is left out"
    except ValueError:  # a torn middle line: JSONDecodeError (or UnicodeDecodeError for binary garbage)
        pass
    else:
        bad = next((i for i, r in enumerate(records) if not _is_record(r)), None)
        if bad is None:
            return records, None, None
    # locate the line (1-based, blank lines counted) and the last readable iteration in the file
    last, k, where, why = None, -1, None, "is not valid JSON (a torn or corrupt line)"
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            k += 1
            try:
                rec = json.loads(line.decode())
            except ValueError:  # not JSON, or not UTF-8
                where = where or lineno
                continue
            if k == bad and where is None:
                where, why = lineno, "is not a metrics record (an object with numeric iteration and env_steps)"
            elif _is_record(rec):
                last = int(rec["iteration"])
    return [], last, f"{path}: line {where} {why}; this run's learning curve is left out"


def _is_record(r: object) -> bool:
    return isinstance(r, dict) and all(isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)
                                       for k in ("iteration", "env_steps"))


def read_overrides(path: Path) -> list[str]:
    """A run's ``.hydra/overrides.yaml``: a YAML list of ``key=value`` strings; ValueError otherwise."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, ValueError, yaml.YAMLError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not readable as YAML ({reason})") from None
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(o, str) for o in data):
        raise ValueError(f"{path}: a YAML list of override strings is expected, got {type(data).__name__}")
    return data


LEARNERS = {"maml": "MAML", "rl2": "RL²"}


def run_labels(run_dir: Path) -> tuple[str | None, str | None]:
    """The env config and learner of a run, from its ``.hydra`` files (None where they do not say)."""
    hydra = Path(run_dir) / ".hydra"
    env = algo = None
    try:  # the config group choices Hydra recorded: env=point_nav, algo=maml
        choices = yaml.safe_load((hydra / "hydra.yaml").read_text())["hydra"]["runtime"]["choices"]
        env, algo = choices.get("env"), choices.get("algo")
    except Exception:
        pass
    if env is None or algo is None:
        try:  # the composed config: env._target_: dmrl.envs.PointNav
            cfg = yaml.safe_load((hydra / "config.yaml").read_text())
            env = env or str(cfg["env"]["_target_"]).rsplit(".", 1)[-1]
            algo = algo or str(cfg["algo"]["_target_"]).rsplit(".", 1)[-1]
        except Exception:
            pass
    learner = LEARNERS.get(str(algo).lower(), str(algo)) if algo else None
    return (str(env) if env else None), learner


def load_run(path: Path) -> Run:
    """A run dir as a :class:`Run`; what cannot be read is in ``run.warnings`` (never raised)."""
    warnings: list[str] = []
    problem = ""
    try:
        summary = read_summary(path, strict=True)
    except ValueError as e:
        summary, problem = None, str(e)
        warnings.append(f"{e}; the run is listed as corrupt, not averaged")
    metrics, last_iteration = [], None
    if (path / METRICS_FILE).is_file():
        metrics, last_iteration, why = read_run_metrics(path / METRICS_FILE)
        if why:
            warnings.append(why)
    overrides: list[str] | None
    if summary is not None and "overrides" in summary:
        overrides = [str(o) for o in summary["overrides"]]
    else:
        ov = path / ".hydra" / "overrides.yaml"
        try:
            overrides = read_overrides(ov) if ov.is_file() else []
        except ValueError as e:
            overrides = None
            warnings.append(f"{e}; the run's config is unknown, so it is listed but not averaged")
    status = CORRUPT if problem else summary["status"] if summary is not None else UNFINISHED
    env, learner = run_labels(path)
    return Run(path=path, status=status, overrides=overrides, summary=summary, metrics=metrics, warnings=warnings,
               env=env, learner=learner, last_iteration=last_iteration, problem=problem)


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
    return heldout.get("return_mean") or heldout.get("episode_return_mean") or heldout.get("trajectory_return_mean")


def heldout_success(run: Run) -> float | None:
    """Held-out success rate at the last point of the curve, where the env reports success (Meta-World)."""
    success = ((run.summary or {}).get("heldout") or {}).get("success_mean")
    return success[-1] if success else None


def use_success_as_objective(runs: list[Run]) -> None:
    """``dmrl-report --objective success``: each finished run's objective becomes its held-out success
    rate after adapting (None where its env reports no success: the run is then not in the column)."""
    for run in runs:
        if run.summary:
            run.summary["objective"] = heldout_success(run)
            run.summary["objective_name"] = "heldout/success_after_adapting"


# (column, label, digits, how to read it from a finished run)
METRICS = (
    ("objective", "objective", 3, lambda r: r.summary.get("objective")),
    ("heldout_pre_adapt", "held-out return before adapting", 3, lambda r: (heldout_curve(r) or [None])[0]),
    ("train_post_adapt", "last meta-batch return, post-adapt", 3,
     lambda r: (r.summary.get("final") or {}).get("meta_train/return_post_adapt")),
    ("heldout_success", "held-out success after adapting", 3, lambda r: heldout_success(r)),
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
        if run.status == FINISHED and run.overrides is not None:
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
    # a column no group has (success, where no env reports it) is left out
    shown = [m for m in METRICS if m[0] != "heldout_success" or any(m[0] in g.stats for g in groups)]
    labels = [objective if c == "objective" else label for c, label, _, _ in shown]
    lines = ["| config | seeds | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for g in groups:
        cells = [_cell(g.stats.get(c), digits) for c, _, digits, _ in shown]
        lines.append(f"| {g.config} | {len(g.runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def not_averaged(runs: list[Run]) -> list[Run]:
    return [r for r in runs if r.status != FINISHED or r.overrides is None]


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


def names(values, unknown: str) -> str:
    """Distinct labels joined for a title (``point_nav``, ``MAML, RL²``), or ``unknown``."""
    found = sorted({str(v) for v in values if v})
    return ", ".join(found) if found else unknown


def plot_heading(env: str | None, learner: str | None) -> str:
    """What a plot is about, for its title: ``point_nav · MAML``."""
    return f"{env or 'unknown env'} · {learner or 'unknown learner'}"


def steps_scale(largest: float) -> tuple[float, str]:
    """Divisor and axis label for environment steps, so tick labels stay plain numbers (no 1e7 offset)."""
    for div, unit in ((1e9, "billions"), (1e6, "millions"), (1e3, "thousands")):
        if largest >= 10 * div:
            return div, f"environment steps ({unit})"
    return 1.0, "environment steps"


def _labels(groups: list[Group]) -> tuple[list[str], str]:
    """Legend label of each group (the overrides that tell the groups apart, and their seeds) and the
    overrides all groups share (for the title)."""
    parts = [g.config.split(" ") for g in groups]
    common = set.intersection(*map(set, parts)) if len(parts) > 1 else set()
    labels = [f"{' '.join(p for p in ps if p not in common) or '(defaults)'} ({len(g.runs)} seed"
              f"{'s' if len(g.runs) != 1 else ''})" for ps, g in zip(parts, groups)]
    return labels, " ".join(p for p in parts[0] if p in common) if common else ""


def _runs_heading(groups: list[Group]) -> str:
    runs = [r for g in groups for r in g.runs]
    return plot_heading(names((r.env for r in runs), ""), names((r.learner for r in runs), ""))


def _interval_note(groups: list[Group]) -> str:
    if all(len(g.runs) < 2 for g in groups):
        return "lines: one seed per config, no interval"
    return "lines: mean over seeds, bands: 95% bootstrap interval over seeds"


def _legend_below(fig, ax, n: int) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=1 if n > 3 or max(map(len, labels)) > 40 else n,
                   fontsize=8, frameon=False)


def plot_learning_curves(groups: list[Group], path: Path):
    """Pre- and post-adaptation meta-batch return against environment steps, one line per config.

    Returns the figure (closed, already saved) for tests to inspect."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    learners = {r.learner for g in groups for r in g.runs}
    if learners == {"RL²"}:
        titles = ("first episode of each trial", "last episode of each trial")
    elif learners == {"MAML"}:
        titles = ("before adaptation (0 inner steps)", "after the inner steps")
    else:
        titles = ("before adaptation (MAML) / first episode (RL²)", "after the inner steps (MAML) / last episode (RL²)")
    curves = {key: [learning_curves(g, key) for g in groups]
              for key in ("meta_train/return_pre_adapt", "meta_train/return_post_adapt")}
    largest = max((float(np.max(c[0])) for cs in curves.values() for c in cs if c is not None and len(c[0])), default=0.0)
    div, xlabel = steps_scale(largest)
    labels, common = _labels(groups) if groups else ([], "")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), dpi=110, sharey=True, layout="constrained")
    for ax, (key, cs), title in zip(axes, curves.items(), titles):
        for g, curve, label in zip(groups, cs, labels):
            if curve is None:
                continue
            x, mean, lo, hi = curve
            line, = ax.plot(x / div, mean, label=label)
            if not np.isnan(lo).all():
                ax.fill_between(x / div, lo, hi, alpha=0.2, color=line.get_color())
        ax.set_title(f"meta-batch return, {title}", fontsize=10)
        ax.set_xlabel(xlabel)
        ax.ticklabel_format(axis="x", style="plain", useOffset=False)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean episode return")
    fig.suptitle(f"{_runs_heading(groups)}: training curves; {_interval_note(groups)}"
                 + (f"\nall runs: {common}" if common else ""), fontsize=10)
    _legend_below(fig, axes[0], len(groups))
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return fig


def adaptation_curves(group: Group) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Held-out return after 0..K inner steps (MAML; x = 0..K) or of episodes 1..E of a trial (RL²;
    x = 1..E): mean and interval over the group's seeds."""
    rows = [c for c in map(heldout_curve, group.runs) if c]
    if not rows:
        return None
    k = min(len(x) for x in rows)
    y = np.array([x[:k] for x in rows], dtype=float)
    lo, hi = bootstrap_ci(y)
    first = 1 if all("episode_return_mean" in ((r.summary or {}).get("heldout") or {}) for r in group.runs
                     if heldout_curve(r)) else 0
    return np.arange(first, first + k), y.mean(axis=0), lo, hi


def plot_adaptation(groups: list[Group], path: Path):
    """Held-out adaptation curve of each config; the figure (closed, saved) when there was one to draw, else None."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [(g, adaptation_curves(g)) for g in groups]
    curves = [(g, c) for g, c in curves if c is not None]
    if not curves:
        return None
    drawn = [g for g, _ in curves]
    labels, common = _labels(drawn)
    learners = {r.learner for g in drawn for r in g.runs}
    fig, ax = plt.subplots(figsize=(7, 4.6), dpi=110, layout="constrained")
    for (g, (steps, mean, lo, hi)), label in zip(curves, labels):
        line, = ax.plot(steps, mean, marker="o", label=label)
        if not np.isnan(lo).all():
            ax.fill_between(steps, lo, hi, alpha=0.2, color=line.get_color())
    if learners == {"RL²"}:
        ax.set_xlabel("episode of the trial")
    elif learners == {"MAML"}:
        ax.set_xlabel("inner gradient steps")
    else:
        ax.set_xlabel("inner gradient steps (MAML) / episode of the trial (RL²)")
    ax.set_ylabel("mean episode return on held-out tasks")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.set_title(f"{_runs_heading(drawn)}: adaptation on held-out tasks\n{_interval_note(drawn)}"
                 + (f"\nall runs: {common}" if common else ""), fontsize=10)
    _legend_below(fig, ax, len(drawn))
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return fig


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
    if plot_adaptation(groups, out / "adaptation.png") is not None:
        paths.append(out / "adaptation.png")
    statuses = (FINISHED, FAILED, UNFINISHED) + ((CORRUPT,) if any(r.status == CORRUPT for r in runs) else ())
    counts = ", ".join(f"{sum(r.status == s for r in runs)} {s}" for s in statuses)
    text = [f"{len(runs)} runs ({counts}); mean and {LEVEL:.0%} bootstrap interval over seeds "
            f"({RESAMPLES} resamples, seed {BOOTSTRAP_SEED}); objective: {objective}", "", table]
    if excluded:
        kinds = "failed or unfinished" if len(statuses) == 3 else "failed, unfinished or corrupt"
        text += ["", f"Not averaged ({len(excluded)} {kinds}):", "", excluded_table(excluded)]
    md = ["# Sweep report", "", *text, "", "![learning curves](learning_curves.png)"]
    if len(paths) > 4:
        md.append("![adaptation on held-out tasks](adaptation.png)")
    warnings = [w for r in runs for w in r.warnings]
    if warnings:
        md += ["", "Warnings:", "", *(f"- {w}" for w in warnings)]
    paths[0].write_text("\n".join(md) + "\n")
    return "\n".join(text), paths
