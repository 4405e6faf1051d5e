"""Meta-test: adapt to held-out tasks and report how fast the return improves.

Held-out tasks come from the ``test`` stream of the task distribution (disjoint from training)
and are fixed by the evaluation seed, so two checkpoints are compared on the same tasks.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from dmrl.build import Parts
from dmrl.classic import run_classic
from dmrl.learner import AdaptationResult, MetaTestBudget, mean_ci95
from dmrl.tasks.distributions import TaskDistribution, Tasks, task_rng


summarize = mean_ci95  # the name scripts and tests know

PROGRESS_EVERY_S = 10.0


def _progress():
    """A line on stderr at most every 10 s while a meta-test runs (a long eval is never silent)."""
    t0 = last = time.perf_counter()

    def on_step(k: int, total: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= PROGRESS_EVERY_S and k < total:
            last = now
            eta = (now - t0) / (k + 1) * (total - k)
            print(f"meta-test: point {k + 1} of {total + 1} done, eta {eta:.0f}s", file=sys.stderr, flush=True)

    return on_step


def heldout_tasks(distribution: TaskDistribution, num_tasks: int, seed: int) -> Tasks:
    """The held-out tasks of ``seed``: the first ``num_tasks`` of the distribution's ``test`` stream.
    Every meta-test of one env and task distribution at one seed (any checkpoint, policy=random)
    meets exactly these."""
    return distribution.sample(num_tasks, task_rng(seed, "test"), split="test")


def evaluate(parts: Parts, *, num_tasks: int, seed: int, budget: MetaTestBudget | None = None,
             recorder=None) -> dict:
    """Meta-test the learner on ``num_tasks`` held-out tasks (the learner's ``meta_test``) and
    summarize its :class:`~dmrl.learner.AdaptationResult` for eval.json / summary.json.

    ``budget``: how much adaptation (default: the learner's end-of-run budget). ``recorder`` (a
    :class:`dmrl.video.Recorder` of ``parts.env``), when given, stands in for the sampler's env
    during the rollouts and keeps episodes for videos; the numbers are unchanged.
    """
    return meta_test(parts.algo, parts.env, parts.tasks, num_tasks=num_tasks, seed=seed, budget=budget,
                     recorder=recorder)


def meta_test(learner, env, distribution: TaskDistribution, *, num_tasks: int, seed: int,
              budget: MetaTestBudget | None = None, recorder=None) -> dict:
    """The one meta-test protocol, for any learner of the contract (a checkpoint's, or a policy
    without one such as :class:`dmrl.classic.UniformPolicy`): seed its sampler, draw the held-out
    tasks, ``learner.meta_test`` them and summarize, with the env's classic baselines on the same tasks."""
    budget = budget or learner.final_budget()
    if budget.on_step is None:
        budget.on_step = _progress()
    learner.sampler.seed(seed)
    tasks = heldout_tasks(distribution, num_tasks, seed)
    sampler = learner.sampler
    sampler_env = sampler.env
    if recorder is not None:
        sampler.env = recorder
    try:
        result = learner.meta_test(tasks, budget)
    finally:
        sampler.env = sampler_env
    return summarize_result(result, num_tasks, classic=lambda n: run_classic(env, tasks, n, seed),
                            groups=env.task_groups(tasks))


def metaworld_protocol(learner, env, distribution: TaskDistribution, *, num_tasks: int, seed: int, num_evals: int = 10,
                       adapt_steps: int = 1, adapt_episodes: int = 10, eval_episodes: int = 3) -> dict:
    """Meta-World's meta-learning evaluation (``metaworld.evaluation.metalearning_evaluation``, the
    protocol of Meta-World+) for any learner of the contract: ``num_evals`` rounds, each on a fresh
    draw of ``num_tasks`` held-out tasks (the first round's are :func:`heldout_tasks`'s); on each
    task ``adapt_episodes`` episodes of adaptation (``adapt_steps`` inner steps for the gradient
    family; one trial for RL²; the posterior's context for PEARL), then ``eval_episodes`` evaluation
    episodes, each a success if any of its steps is. A round's success rate is the mean over task
    classes of their tasks' mean (Meta-World's per-class average), the result the mean of the rounds."""
    budget = MetaTestBudget(steps=int(adapt_steps), adapt_episodes=int(adapt_episodes), eval_episodes=int(eval_episodes),
                            on_step=lambda k, n: None)
    rng = task_rng(seed, "test")
    learner.sampler.seed(seed)
    rounds, returns, classes = [], [], {}
    for _ in range(int(num_evals)):
        tasks = distribution.sample(num_tasks, rng, split="test")
        result = learner.meta_test(tasks, budget)
        rows = 1 if result.axis == "inner_step" else int(eval_episodes)  # the evaluation episodes' points
        task_return = result.returns[-rows:].mean(0)  # [N]
        returns.append(float(task_return.mean()))
        if result.success is None:
            raise ValueError(f"protocol=metaworld scores success, which {type(env).__name__} does not report")
        task_success = result.success[-rows:].mean(0)  # [N]
        groups = env.task_groups(tasks) or ["all"] * len(task_success)
        per_class = {name: float(np.mean([s for s, g in zip(task_success, groups) if g == name])) for name in sorted(set(groups))}
        for name, rate in per_class.items():
            classes.setdefault(name, []).append(rate)
        rounds.append(float(np.mean(list(per_class.values()))))
    r_mean, r_ci = mean_ci95(np.asarray(rounds)[None])
    return {"protocol": "metaworld", "num_evals": int(num_evals), "num_tasks": int(num_tasks),
            "adaptation_steps": int(adapt_steps), "adaptation_episodes": int(adapt_episodes),
            "evaluation_episodes": int(eval_episodes), "success_rate": float(r_mean[0]),
            "success_rate_ci95_over_rounds": float(r_ci[0]), "success_rate_per_round": rounds,
            "return_mean": float(np.mean(returns)),
            "success_rate_per_class": {name: float(np.mean(v)) for name, v in classes.items()},
            "objective_name": "heldout/metaworld_success_rate", "objective": float(r_mean[0])}


def format_protocol_table(result: dict) -> str:
    width = max(10, *(len(n) for n in result["success_rate_per_class"]))
    lines = [f"Meta-World protocol: {result['num_evals']} rounds x {result['num_tasks']} held-out tasks, "
             f"{result['adaptation_episodes']} adaptation episodes ({result['adaptation_steps']} inner steps for the "
             f"gradient family), then {result['evaluation_episodes']} evaluation episodes",
             f"{'task class':<{width}}  success"]
    lines += [f"{name:<{width}}  {rate:>7.3f}" for name, rate in result["success_rate_per_class"].items()]
    lines.append(f"{'overall':<{width}}  {result['success_rate']:>7.3f} +- {result['success_rate_ci95_over_rounds']:.3f} "
                 f"(95% interval over rounds); mean evaluation return {result['return_mean']:.1f}")
    return "\n".join(lines)


def summarize_result(result: AdaptationResult, num_tasks: int, classic=None, groups: list[str] | None = None) -> dict:
    """eval.json's numbers: the curve along the result's axis (mean, 95% interval, per task), the
    objective, the learner's extras; on the episode axis, the classic baselines of the env
    (``classic(n)``: per-episode returns ``[N, n]`` of each) played on the same tasks; where the
    env names a group per task (``groups``, Meta-World's classes), return and success per group."""
    curve = result.returns  # [K, num_tasks]
    mean, ci = mean_ci95(curve)
    objective = np.asarray(result.objective(curve))  # [num_tasks], in the curve's dtype (float32 sums round as before)
    o_mean, o_ci = mean_ci95(objective[None])
    out: dict = {}
    if result.axis == "trajectory":  # PEARL: the return of each successive trajectory on a task
        out.update({"trajectories": list(range(1, curve.shape[0] + 1)),
                    "trajectory_return_mean": [float(x) for x in mean], "trajectory_return_ci95": [float(x) for x in ci],
                    "num_tasks": int(num_tasks), "per_task_returns": curve.T.tolist(), **result.extras})
    elif result.axis == "inner_step":
        out["adapt_steps"] = list(range(curve.shape[0]))
        out.update(result.extras)
        out.update({"return_mean": [float(x) for x in mean], "return_ci95": [float(x) for x in ci],
                    "num_tasks": int(num_tasks), "per_task_returns": curve.T.tolist()})
    else:  # an axis of episodes: the objective is the trial's return
        out.update({"episodes": list(range(1, curve.shape[0] + 1)),
                    "episode_return_mean": [float(x) for x in mean], "episode_return_ci95": [float(x) for x in ci],
                    "trial_return_mean": float(o_mean[0]), "trial_return_ci95": float(o_ci[0]),
                    "num_tasks": int(num_tasks), **result.extras})
        baselines = {}
        for name, returns in (classic(curve.shape[0]) if classic else {}).items():  # [N, E] each
            b_mean, b_ci = mean_ci95(returns.sum(1, keepdims=True).T)
            baselines[name] = {"trial_return_mean": float(b_mean[0]), "trial_return_ci95": float(b_ci[0]),
                               "episode_return_mean": [float(x) for x in returns.mean(0)]}
        out["baselines"] = baselines
        out["per_task_trial_returns"] = objective.tolist()
    if result.success is not None:
        s_mean, s_ci = mean_ci95(result.success.astype(float))
        out["success_mean"], out["success_ci95"] = [float(x) for x in s_mean], [float(x) for x in s_ci]
        out["per_task_success"] = result.success.astype(float).T.tolist()
        if result.success.shape[0] > 1:  # adaptation's gain, paired over the same tasks: last point minus first
            g_mean, g_ci = mean_ci95((result.success[-1] - result.success[0]).astype(float)[None])
            out["success_gain"], out["success_gain_ci95"] = float(g_mean[0]), float(g_ci[0])
    if groups is not None:
        out["per_group"] = {}
        for name in sorted(set(groups)):
            cols = [i for i, g in enumerate(groups) if g == name]
            g = {"num_tasks": len(cols), "return_mean": [float(x) for x in curve[:, cols].mean(1)]}
            if result.success is not None:
                g_mean, g_ci = mean_ci95(result.success[:, cols].astype(float))
                g["success_mean"], g["success_ci95"] = [float(x) for x in g_mean], [float(x) for x in g_ci]
            out["per_group"][name] = g
    out["axis"] = result.axis
    out["objective_name"], out["objective"], out["objective_ci95"] = result.objective_name, float(o_mean[0]), float(o_ci[0])
    return out


def write_report(result: dict, out_dir: Path) -> list[Path]:
    """``eval.json``, ``eval.csv`` and ``adaptation.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "eval.json", out_dir / "eval.csv", out_dir / "adaptation.png"]
    paths[0].write_text(json.dumps(result, indent=2) + "\n")
    if "trajectory_return_mean" in result:
        _write_trajectory_csv(result, paths[1])
        plot_trajectories(result, paths[2])
        return paths
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


def _row_name(result: dict) -> str:
    """The evaluated policy's row in tables and eval.csv: ``learner`` (a checkpoint's), or the
    ``policy=NAME`` scored without one (next to the classic baselines' rows, e.g. ``random``)."""
    return f"policy={result['policy']}" if result.get("policy") else "learner"


def _learner_name(result: dict, learner: str) -> str:
    """What a plot calls the evaluated policy: the checkpoint's ``learner`` or ``policy=NAME``."""
    return f"{result['policy']} policy (no checkpoint)" if result.get("policy") else learner


def _heading(result: dict, learner: str, env: str | None) -> str:
    """``point_nav · MAML``: the env from the caller, ``result["env"]`` or the checkpoint's run dir."""
    from dmrl.report import plot_heading, run_labels

    learner = _learner_name(result, learner)
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
    if len(steps) == 1:  # one point (no adaptation, e.g. policy=random): a band would have no width
        ax.errorbar(steps, mean, yerr=ci, fmt="o", capsize=4, label="mean over tasks, 95% interval")
    else:
        ax.plot(steps, mean, marker="o", label="mean over tasks")
        ax.fill_between(steps, mean - ci, mean + ci, alpha=0.25, label="95% interval")
    ax.set_xlabel("inner gradient steps")
    ax.set_ylabel("mean episode return")
    ax.set_xticks(steps)
    what = "adaptation" if len(steps) > 1 else "return"
    ax.set_title(f"{_heading(result, 'MAML', env)}: {what} on {result['num_tasks']} held-out tasks\n"
                 f"{'band' if len(steps) > 1 else 'bar'}: 95% normal interval of the mean over tasks", fontsize=10)
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
            w.writerow([_row_name(result), e, f"{m:.6g}", f"{c:.6g}", result["num_tasks"]])
        w.writerow([_row_name(result), "trial", f"{result['trial_return_mean']:.6g}",
                    f"{result['trial_return_ci95']:.6g}", result["num_tasks"]])
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
    learner = _learner_name(result, "RL² (learner)")
    ax.plot(episodes, mean, marker="o", color="black", lw=2, label=f"{learner}, 95% interval")
    ax.fill_between(episodes, mean - ci, mean + ci, color="black", alpha=0.15)
    for k, (name, b) in enumerate(baselines.items()):
        ax.plot(episodes, b["episode_return_mean"], lw=1.2, alpha=0.9, color=f"C{k}", marker=".",
                label=BASELINE_NAMES.get(name, name.replace("_", " ")))
    ax.set_xlabel("episode of the trial")
    ax.set_ylabel("mean episode return")
    ax.set_xticks(episodes)
    ax.set_title("return per episode (baselines: mean only)", fontsize=10)
    ax.grid(alpha=0.3)
    rows = [(learner, result["trial_return_mean"], result["trial_return_ci95"], "black")]
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
    what = "trial" if result.get("policy") else "within-trial adaptation"
    fig.suptitle(f"{_heading(result, 'RL²', env)}: {what} on {result['num_tasks']} held-out tasks, "
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


def _write_trajectory_csv(result: dict, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trajectory", "return_mean", "return_ci95", "success_mean", "num_tasks"])
        success = result.get("success_mean") or [""] * len(result["trajectories"])
        for k, m, c, s in zip(result["trajectories"], result["trajectory_return_mean"], result["trajectory_return_ci95"],
                              success):
            w.writerow([k, f"{m:.6g}", f"{c:.6g}", s if s == "" else f"{s:.4g}", result["num_tasks"]])


def plot_trajectories(result: dict, path: Path, env: str | None = None):
    """Return (and success, where reported) of each successive trajectory on the held-out tasks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(result["trajectories"])
    mean, ci = np.asarray(result["trajectory_return_mean"]), np.asarray(result["trajectory_return_ci95"])
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120, layout="constrained")
    ax.plot(x, mean, marker="o", label="mean over tasks")
    ax.fill_between(x, mean - ci, mean + ci, alpha=0.25, label="95% interval")
    explore = result.get("num_exp_traj_eval")
    if explore is not None and explore < len(x):
        ax.axvline(explore + 0.5, color="grey", ls="--", lw=1, label=f"after {explore} exploration trajectories")
    ax.set_xlabel("trajectory on the task (the first from the prior)")
    ax.set_ylabel("mean episode return")
    ax.set_xticks(x)
    ax.set_title(f"{_heading(result, 'PEARL', env)}: {result['num_tasks']} held-out tasks\n"
                 "band: 95% normal interval of the mean over tasks", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return fig


def format_table(result: dict) -> str:
    return _format_table(result) + (f"\nsuccess at the last point minus the first, paired over the tasks: "
                                    f"{result['success_gain']:+.3f} +- {result['success_gain_ci95']:.3f}"
                                    if "success_gain" in result else "")


def _format_table(result: dict) -> str:
    if "trajectory_return_mean" in result:
        lines = [f"{'trajectory':>10}  {'return':>10}  {'ci95':>8}" + ("  success" if "success_mean" in result else "")]
        success = result.get("success_mean")
        for i, (k, m, c) in enumerate(zip(result["trajectories"], result["trajectory_return_mean"],
                                          result["trajectory_return_ci95"])):
            lines.append(f"{k:>10}  {m:>10.3f}  {c:>8.3f}" + (f"  {success[i]:>7.3f}" if success else ""))
        lines.append(f"{result['objective_name']}: {result['objective']:.3f} +- {result['objective_ci95']:.3f}")
        return "\n".join(lines)
    if "trial_return_mean" in result:
        return _format_trial_table(result) + _format_groups(result)
    lines = [f"{'steps':>5}  {'last step':>9}  {'return':>10}  {'ci95':>8}" + _success_head(result)]
    sizes = [f"{x:g}" if x != "" else "" for x in _last_step_sizes(result)]
    for i, (k, size, m, c) in enumerate(zip(result["adapt_steps"], sizes, result["return_mean"], result["return_ci95"])):
        lines.append(f"{k:>5}  {size:>9}  {m:>10.3f}  {c:>8.3f}" + _success_cells(result, i))
    return "\n".join(lines) + _format_groups(result)


def _success_head(result: dict) -> str:
    return f"  {'success':>7}  {'ci95':>6}" if "success_mean" in result else ""


def _success_cells(result: dict, i: int) -> str:
    if "success_mean" not in result:
        return ""
    return f"  {result['success_mean'][i]:>7.3f}  {result['success_ci95'][i]:>6.3f}"


def _format_groups(result: dict) -> str:
    """Per task group (Meta-World's classes): tasks, and the last point's return and success."""
    groups = result.get("per_group")
    if not groups:
        return ""
    width = max(len(n) for n in groups)
    lines = ["", "", f"{'task class':<{width}}  {'tasks':>5}  {'return':>10}" + ("  success  ci95" if "success_mean" in result else "")
             + "   (after the last point)"]
    for name, g in groups.items():
        cells = f"  {g['success_mean'][-1]:>7.3f}  {g['success_ci95'][-1]:>4.2f}" if "success_mean" in g else ""
        lines.append(f"{name:<{width}}  {g['num_tasks']:>5}  {g['return_mean'][-1]:>10.3f}" + cells)
    return "\n".join(lines)


def _format_trial_table(result: dict) -> str:
    lines = [f"{'episode':>7}  {'return':>10}  {'ci95':>8}" + _success_head(result)]
    for i, (e, m, c) in enumerate(zip(result["episodes"], result["episode_return_mean"], result["episode_return_ci95"])):
        lines.append(f"{e:>7}  {m:>10.3f}  {c:>8.3f}" + _success_cells(result, i))
    rows = [(_row_name(result), result["trial_return_mean"], result["trial_return_ci95"])]
    rows += [(n, b["trial_return_mean"], b["trial_return_ci95"]) for n, b in result["baselines"].items()]
    lines += ["", f"{'policy':<16}  {'trial return':>12}  {'ci95':>8}"]
    lines += [f"{n:<16}  {m:>12.3f}  {c:>8.3f}" for n, m, c in rows]
    return "\n".join(lines)
