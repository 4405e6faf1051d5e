"""Meta-test: adapt to held-out tasks and report how fast the return improves.

Held-out tasks come from the ``test`` stream of the task distribution (disjoint from training)
and are fixed by the evaluation seed, so two checkpoints are compared on the same tasks.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
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


PROGRESS_EVERY_S = 10.0


def _progress(steps: int):
    """A line on stderr at most every 10 s while the adaptation steps run (a long eval is never silent)."""
    t0 = last = time.perf_counter()

    def on_step(k: int, total: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= PROGRESS_EVERY_S and k < total:
            last = now
            eta = (now - t0) / (k + 1) * (total - k)
            print(f"dmrl-eval: adaptation step {k}/{total} done, eta {eta:.0f}s", file=sys.stderr, flush=True)

    return on_step


def evaluate(parts: Parts, *, num_tasks: int, adapt_steps: int, seed: int, episodes: int | None,
             recorder=None, later_lr_scale: float = 1.0) -> dict:
    """The adaptation curve on ``num_tasks`` held-out tasks.

    Gradient-based learners (MAML) report the return after 0..``adapt_steps`` inner steps (after
    the first, of ``later_lr_scale`` times the training step size);
    context-based ones (RL²) the return of each episode of a trial (:func:`evaluate_trials`).

    ``recorder`` (a :class:`dmrl.video.Recorder` of ``parts.env``), when given, stands in for the
    sampler's env during the rollouts and keeps episodes for videos; the numbers are unchanged.
    """
    if hasattr(parts.algo, "trial_curve"):
        return evaluate_trials(parts, num_tasks=num_tasks, seed=seed, trials=episodes)
    parts.algo.sampler.seed(seed)
    tasks = parts.tasks.sample(num_tasks, task_rng(seed, "test"))
    sampler = parts.algo.sampler
    env = sampler.env
    if recorder is not None:
        sampler.env = recorder
    try:
        curve = parts.algo.adaptation_curve(tasks, adapt_steps, episodes, later_lr_scale,
                                            on_step=_progress(adapt_steps))  # [K + 1, num_tasks]
    finally:
        sampler.env = env
    mean, ci = summarize(curve)
    return {
        "adapt_steps": list(range(adapt_steps + 1)),
        "step_sizes": parts.algo.step_sizes(adapt_steps, later_lr_scale),
        "return_mean": [float(x) for x in mean],
        "return_ci95": [float(x) for x in ci],
        "num_tasks": int(num_tasks),
        "per_task_returns": curve.T.tolist(),
    }


def evaluate_trials(parts: Parts, *, num_tasks: int, seed: int, trials: int | None) -> dict:
    """RL²'s adaptation curve: the return of each episode of a trial, and the trial's total.

    On bandits and tabular MDPs the classic baselines (:mod:`dmrl.classic`) play the very same
    held-out tasks, one trial each, so their numbers sit side by side with the learner's.
    """
    from dmrl.classic import run_classic

    parts.algo.sampler.seed(seed)
    tasks = parts.tasks.sample(num_tasks, task_rng(seed, "test"))
    curve = parts.algo.trial_curve(tasks, trials)  # [E, num_tasks]
    mean, ci = summarize(curve)
    trial_mean, trial_ci = summarize(curve.sum(0, keepdims=True))
    baselines = {}
    for name, returns in run_classic(parts.env, tasks, curve.shape[0], seed).items():  # [N, E] each
        b_mean, b_ci = summarize(returns.sum(1, keepdims=True).T)
        baselines[name] = {"trial_return_mean": float(b_mean[0]), "trial_return_ci95": float(b_ci[0]),
                           "episode_return_mean": [float(x) for x in returns.mean(0)]}
    return {
        "episodes": list(range(1, curve.shape[0] + 1)),
        "episode_return_mean": [float(x) for x in mean],
        "episode_return_ci95": [float(x) for x in ci],
        "trial_return_mean": float(trial_mean[0]),
        "trial_return_ci95": float(trial_ci[0]),
        "num_tasks": int(num_tasks),
        "trials_per_task": int(trials or 1),
        "baselines": baselines,
        "per_task_trial_returns": curve.sum(0).tolist(),
    }


def write_report(result: dict, out_dir: Path) -> list[Path]:
    """``eval.json``, ``eval.csv`` and ``adaptation.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "eval.json", out_dir / "eval.csv", out_dir / "adaptation.png"]
    paths[0].write_text(json.dumps(result, indent=2) + "\n")
    if "trial_return_mean" in result:
        _write_trial_csv(result, paths[1])
        plot_trials(result, paths[2])
        return paths
    with open(paths[1], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["adapt_steps", "return_mean", "return_ci95", "num_tasks", "last_step_size"])
        sizes = _last_step_sizes(result)
        for k, m, c, size in zip(result["adapt_steps"], result["return_mean"], result["return_ci95"], sizes):
            w.writerow([k, f"{m:.6g}", f"{c:.6g}", result["num_tasks"], size])
    plot_adaptation(result, paths[2])
    return paths


# readable names of the classic baselines (dmrl.classic) in plots
BASELINE_NAMES = {"random": "random", "greedy": "greedy", "epsilon_greedy": "ε-greedy (ε = 0.1)", "ucb1": "UCB1",
                  "thompson": "Thompson sampling", "bayes_optimal": "Bayes-optimal", "psrl": "PSRL (posterior sampling)",
                  "per_state_bandit": "per-state bandit"}


def _heading(result: dict, learner: str, env: str | None) -> str:
    """``point_nav · MAML``: the env from the caller, ``result["env"]`` or the checkpoint's run dir."""
    from dmrl.report import plot_heading, run_labels

    env = env or result.get("env")
    if env is None and result.get("checkpoint"):
        ckpt = Path(result["checkpoint"])
        env = run_labels(ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent)[0]
    return plot_heading(env, learner)


def plot_adaptation(result: dict, path: Path, env: str | None = None):
    """MAML's adaptation curve on the held-out tasks; returns the figure (saved and closed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.asarray(result["adapt_steps"])
    mean, ci = np.asarray(result["return_mean"]), np.asarray(result["return_ci95"])
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120, layout="constrained")
    ax.plot(steps, mean, marker="o", label="mean over tasks")
    ax.fill_between(steps, mean - ci, mean + ci, alpha=0.25, label="95% interval")
    ax.set_xlabel("inner gradient steps")
    ax.set_ylabel("mean episode return")
    ax.set_xticks(steps)
    ax.set_title(f"{_heading(result, 'MAML', env)}: adaptation on {result['num_tasks']} held-out tasks\n"
                 f"band: 95% normal interval of the mean over tasks", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return fig


def _write_trial_csv(result: dict, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["policy", "episode", "return_mean", "return_ci95", "num_tasks"])
        for e, m, c in zip(result["episodes"], result["episode_return_mean"], result["episode_return_ci95"]):
            w.writerow(["learner", e, f"{m:.6g}", f"{c:.6g}", result["num_tasks"]])
        w.writerow(["learner", "trial", f"{result['trial_return_mean']:.6g}", f"{result['trial_return_ci95']:.6g}",
                    result["num_tasks"]])
        for name, b in result["baselines"].items():
            w.writerow([name, "trial", f"{b['trial_return_mean']:.6g}", f"{b['trial_return_ci95']:.6g}",
                        result["num_tasks"]])


def plot_trials(result: dict, path: Path, env: str | None = None):
    """RL²'s within-trial curve next to the classic baselines' (left), and every policy's trial
    return with its 95% interval (right). Returns the figure (saved and closed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    episodes = np.asarray(result["episodes"])
    mean, ci = np.asarray(result["episode_return_mean"]), np.asarray(result["episode_return_ci95"])
    baselines = result["baselines"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.4), dpi=120, layout="constrained",
                                 gridspec_kw={"width_ratios": [3, 2]})
    ax.plot(episodes, mean, marker="o", color="black", lw=2, label="RL² (learner), 95% interval")
    ax.fill_between(episodes, mean - ci, mean + ci, color="black", alpha=0.15)
    for k, (name, b) in enumerate(baselines.items()):
        ax.plot(episodes, b["episode_return_mean"], lw=1.2, alpha=0.9, color=f"C{k}", marker=".",
                label=BASELINE_NAMES.get(name, name.replace("_", " ")))
    ax.set_xlabel("episode of the trial")
    ax.set_ylabel("mean episode return")
    ax.set_xticks(episodes)
    ax.set_title("return per episode (baselines: mean only)", fontsize=10)
    ax.grid(alpha=0.3)
    rows = [("RL² (learner)", result["trial_return_mean"], result["trial_return_ci95"], "black")]
    rows += [(BASELINE_NAMES.get(n, n.replace("_", " ")), b["trial_return_mean"], b["trial_return_ci95"], f"C{k}")
             for k, (n, b) in enumerate(baselines.items())]
    y = np.arange(len(rows))[::-1]
    for yi, (label, m, c, color) in zip(y, rows):
        bx.errorbar(m, yi, xerr=c, fmt="o", color=color, capsize=4, ms=6)
    bx.set_yticks(y, [r[0] for r in rows], fontsize=9)
    bx.set_xlabel("trial return (sum over the trial's episodes)")
    bx.set_title("trial return, 95% interval", fontsize=10)
    bx.grid(alpha=0.3, axis="x")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), fontsize=8, frameon=False)
    fig.suptitle(f"{_heading(result, 'RL²', env)}: within-trial adaptation on {result['num_tasks']} held-out tasks, "
                 f"classic baselines on the same tasks\nintervals: 95% normal interval of the mean over tasks",
                 fontsize=10)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return fig


def _last_step_sizes(result: dict) -> list:
    """Size of the inner step that led to each point of the curve: none before the first, and none
    known for an eval.json written before ``step_sizes`` existed."""
    sizes = ["", *result.get("step_sizes", [])]
    return sizes + [""] * (len(result["adapt_steps"]) - len(sizes))


def format_table(result: dict) -> str:
    if "trial_return_mean" in result:
        return _format_trial_table(result)
    lines = [f"{'steps':>5}  {'last step':>9}  {'return':>10}  {'ci95':>8}"]
    sizes = [f"{x:g}" if x != "" else "" for x in _last_step_sizes(result)]
    for k, size, m, c in zip(result["adapt_steps"], sizes, result["return_mean"], result["return_ci95"]):
        lines.append(f"{k:>5}  {size:>9}  {m:>10.3f}  {c:>8.3f}")
    return "\n".join(lines)


def _format_trial_table(result: dict) -> str:
    lines = [f"{'episode':>7}  {'return':>10}  {'ci95':>8}"]
    for e, m, c in zip(result["episodes"], result["episode_return_mean"], result["episode_return_ci95"]):
        lines.append(f"{e:>7}  {m:>10.3f}  {c:>8.3f}")
    rows = [("learner", result["trial_return_mean"], result["trial_return_ci95"])]
    rows += [(n, b["trial_return_mean"], b["trial_return_ci95"]) for n, b in result["baselines"].items()]
    lines += ["", f"{'policy':<16}  {'trial return':>12}  {'ci95':>8}"]
    lines += [f"{n:<16}  {m:>12.3f}  {c:>8.3f}" for n, m, c in rows]
    return "\n".join(lines)
