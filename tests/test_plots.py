"""The plots a user looks at first: titled with env, learner and interval, labelled axes, legends
off the data, plain step ticks, one scale for trajectory panels. Checked on the figure objects."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from dmrl.evaluation import plot_adaptation as plot_eval_adaptation
from dmrl.evaluation import plot_trials
from dmrl.report import Group, Run, group_runs, plot_adaptation, plot_learning_curves
from dmrl.video import Rollout, plot_planar

ROOT = Path(__file__).resolve().parents[1]


def _runs(tmp_path: Path, steps_per_iteration: float) -> list[Run]:
    runs = []
    for lr in ("0.1", "0.2"):
        for seed in range(2):
            metrics = [{"iteration": i, "env_steps": steps_per_iteration * i, "meta_train/return_pre_adapt": -i - seed,
                        "meta_train/return_post_adapt": -i + 1 + seed} for i in range(1, 5)]
            summary = {"status": "finished", "objective": 1.0 + seed, "heldout": {"return_mean": [-2.0 + seed, 1.0]}}
            runs.append(Run(path=tmp_path / f"{lr}-{seed}", status="finished",
                            overrides=[f"algo.inner_lr={lr}", "experiment=smoke", f"seed={seed}"], summary=summary,
                            metrics=metrics, env="point_nav", learner="MAML"))
    return runs


def _outside(fig, ax) -> bool:
    """No legend inside ``ax``, and the figure's legends do not overlap it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # the saved figure is closed: draw it again, layout included
    canvas.draw()
    renderer = canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    return ax.get_legend() is None and fig.legends and not any(
        leg.get_window_extent(renderer).overlaps(box) for leg in fig.legends)


def test_learning_curves_plain_step_ticks_titled_legend_outside(tmp_path):
    groups = group_runs(_runs(tmp_path, 2.5e6))  # up to 1e7 env steps: matplotlib would show a 1e7 offset
    fig = plot_learning_curves(groups, tmp_path / "lc.png")
    assert (tmp_path / "lc.png").stat().st_size > 5000
    for ax in fig.axes:
        assert ax.xaxis.get_offset_text().get_text() == ""
        assert ax.get_xlabel() == "environment steps (millions)"
        assert max(ax.get_xlim()) < 100  # ticks in millions, not raw steps
        assert _outside(fig, ax)
    assert fig.axes[0].get_ylabel()
    title = fig._suptitle.get_text()
    assert "point_nav" in title and "MAML" in title and "95% bootstrap interval over seeds" in title
    assert "experiment=smoke" in title  # shared overrides in the title, the differing ones in the legend
    assert sorted(t.get_text() for t in fig.legends[0].get_texts()) == ["algo.inner_lr=0.1 (2 seeds)",
                                                                         "algo.inner_lr=0.2 (2 seeds)"]


def test_report_adaptation_plot_titled_labelled_legend_outside(tmp_path):
    fig = plot_adaptation(group_runs(_runs(tmp_path, 100)), tmp_path / "ad.png")
    ax, = fig.axes
    assert ax.get_xlabel() == "inner gradient steps" and "held-out" in ax.get_ylabel()
    assert "point_nav · MAML" in ax.get_title() and "95% bootstrap interval" in ax.get_title()
    assert _outside(fig, ax)
    assert plot_adaptation([Group("x", [], {})], tmp_path / "none.png") is None


def _rollout(scale: float) -> Rollout:
    r = Rollout(tasks={"goal": np.array([[0.3, -0.2], [-0.1, 0.4]]) * scale})
    for t in range(4):
        r.states.append(np.array([[0.1 * t, 0.05 * t], [-0.2 * t, 0.1 * t]]) * scale)
        if t:
            r.rewards.append(np.array([-1.0, -2.0]))
            r.done.append(np.array([t == 3, t == 3]))
    return r


def test_trajectory_panels_share_limits_and_name_axes(tmp_path):
    phases = [("pre", 0, _rollout(1.0)), ("post", 3, _rollout(4.0))]  # the second spreads four times wider
    fig = plot_planar(phases, tmp_path / "traj.png")
    pre, post = fig.axes
    assert pre.get_xlim() == post.get_xlim() and pre.get_ylim() == post.get_ylim()
    lo, hi = pre.get_xlim()
    assert lo < -0.6 * 4 and hi > 1.2  # every point of both panels is inside
    for ax in (pre, post):
        assert ax.get_xlabel() == "x position" and ax.get_ylabel() == "y position"
    assert "after adapting (3 inner steps)" == post.get_title()
    assert fig._suptitle.get_text().startswith("point_nav · MAML") and "no interval" in fig._suptitle.get_text()


def _checkpoint_run(tmp_path: Path, env: str, algo: str) -> str:
    (tmp_path / "run/.hydra").mkdir(parents=True)
    (tmp_path / "run/.hydra/hydra.yaml").write_text(f"hydra:\n  runtime:\n    choices:\n      env: {env}\n"
                                                    f"      algo: {algo}\n")
    return str(tmp_path / "run/checkpoints/last.pt")


def test_eval_maml_plot_names_env_from_the_checkpoint_run(tmp_path):
    result = {"checkpoint": _checkpoint_run(tmp_path, "cheetah_vel", "maml"), "adapt_steps": [0, 1, 2],
              "return_mean": [-3.0, -1.0, 0.0], "return_ci95": [0.5, 0.4, 0.3], "num_tasks": 6}
    ax, = plot_eval_adaptation(result, tmp_path / "a.png").axes
    assert ax.get_title().startswith("cheetah_vel · MAML: adaptation on 6 held-out tasks")
    assert "95% normal interval" in ax.get_title()
    assert ax.get_xlabel() and ax.get_ylabel()


def test_eval_rl2_plot_readable_baseline_names_and_intervals(tmp_path):
    names = ["random", "greedy", "epsilon_greedy", "ucb1", "thompson", "bayes_optimal"]
    result = {"checkpoint": _checkpoint_run(tmp_path, "bandit", "rl2"), "episodes": [1, 2, 3],
              "episode_return_mean": [0.4, 0.5, 0.6], "episode_return_ci95": [0.1, 0.1, 0.1],
              "trial_return_mean": 1.5, "trial_return_ci95": 0.2, "num_tasks": 50,
              "baselines": {n: {"trial_return_mean": 1.0 + k / 10, "trial_return_ci95": 0.1 + k / 100,
                                "episode_return_mean": [0.3, 0.35, 0.4]} for k, n in enumerate(names)}}
    fig = plot_trials(result, tmp_path / "t.png")
    curves, trials = fig.axes
    labels = [t.get_text() for t in trials.get_yticklabels()]
    assert labels[0] == "RL² (learner)"
    assert not any("_" in label for label in labels) and "ε-greedy (ε = 0.1)" in labels and "UCB1" in labels
    assert min(t.get_fontsize() for t in trials.get_yticklabels()) >= 8
    bars = trials.containers  # one error bar (the 95% interval) per policy, of the stored half-width
    assert len(bars) == len(names) + 1
    widths = sorted(float(np.ptp(seg[:, 0])) for b in bars for seg in b.lines[2][0].get_segments())
    assert widths == pytest.approx(sorted([0.4] + [2 * (0.1 + k / 100) for k in range(len(names))]))
    title = fig._suptitle.get_text()
    assert title.startswith("bandit · RL²") and "95% normal interval" in title
    assert curves.get_xlabel() == "episode of the trial" and curves.get_ylabel()
    assert _outside(fig, curves)


def _plot_run_module():
    spec = importlib.util.spec_from_file_location("plot_run", ROOT / "scripts/plot_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plot_run_reads_the_number_of_inner_steps_from_the_run(tmp_path):
    plot_run = _plot_run_module()
    maml = [{"iteration": i, "env_steps": 4e6 * i, "meta_train/return_step0": -2.0, "meta_train/return_step1": -1.5,
             "meta_train/return_step2": -1.0, "meta_train/return_pre_adapt": -2.0, "meta_train/return_post_adapt": -1.0}
            for i in range(1, 4)]
    fig = plot_run.plot(maml, tmp_path / "lc.png", 10, "point_nav · MAML")
    ax, = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["before adaptation (0 inner steps)",
                                                                   "after 2 inner steps"]
    assert ax.xaxis.get_offset_text().get_text() == "" and ax.get_xlabel() == "environment steps (millions)"
    assert ax.get_title().startswith("point_nav · MAML") and "not smoothed" in ax.get_title()  # 3 < 10 iterations
    rl2 = [{"iteration": 1, "env_steps": 64, "meta_train/return_episode0": 0.1, "meta_train/return_episode1": 0.3}]
    assert plot_run.post_adapt_label(rl2) == "last episode of the trial (episode 2)"
    assert plot_run.pre_adapt_label(rl2) == "first episode of the trial"
