"""dmrl-report on a sweep dir written by hand, against means and intervals worked out by hand.

Percentile-bootstrap intervals of a mean have exact values for a few seeds with repeated numbers:
- seeds {0, 0, 0, 10}: the resampled mean is 10 K / 4 with K ~ Binomial(4, 1/4) the draws of 10;
  P(K = 0) = 0.316 > 2.5% gives the low end 0, P(K <= 2) = 0.949 < 97.5% <= P(K <= 3) = 0.996
  gives the high end 7.5.
- seeds {1, 2, 4}: each extreme alone is drawn with probability 1/27 = 3.7% > 2.5%: [1, 4].
- two seeds {a, b}: each alone with probability 1/4: [a, b].
With 10,000 resamples the empirical quantiles sit far from these cut points, so the values are exact.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dmrl.report import Group, bootstrap_ci, find_run_dirs, group_runs, learning_curves, load_run


def write_run(d: Path, overrides: list[str], status: str | None, objective: float | None = None,
              returns: list[float] = (), error: str | None = None) -> None:
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra/overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    with open(d / "metrics.jsonl", "w") as f:
        for i, r in enumerate(returns):
            f.write(json.dumps({"iteration": i + 1, "env_steps": 100 * (i + 1), "meta_train/return_pre_adapt": r - 1,
                                "meta_train/return_post_adapt": r}) + "\n")
    if status == "finished":
        summary = {"status": "finished", "objective": objective, "objective_name": "heldout/return_post_adapt",
                   "iteration": len(returns), "env_steps": 100 * len(returns), "train_time_s": 1.0,
                   "final": {"meta_train/return_post_adapt": returns[-1]},
                   "heldout": {"adapt_steps": [0, 1], "return_mean": [objective - 1, objective]}, "overrides": overrides}
    elif status == "failed":
        summary = {"status": "failed", "error": error, "overrides": overrides}
    else:
        return
    (d / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def sweep(tmp_path) -> Path:
    s = tmp_path / "sweep"
    a, b = ["algo.inner_lr=0.1", "launcher=local"], ["algo.inner_lr=0.2", "launcher=local"]
    for i, obj in enumerate([0.0, 0.0, 0.0, 10.0]):
        write_run(s / str(i), [*a, f"seed={i}"], "finished", obj, returns=[obj, obj])
    for i, obj in enumerate([1.0, 2.0, 4.0]):
        write_run(s / str(4 + i), [*b, f"seed={i}"], "finished", obj, returns=[obj, obj + 1])
    write_run(s / "7", [*b, "seed=3"], "failed", returns=[5.0, 6.0, 7.0], error="surrogate loss is nan at iteration 4")
    write_run(s / "8", [*b, "seed=4"], None, returns=[9.0])  # killed after one iteration
    write_run(s / "9", [*a, "seed=4"], None)  # killed before its first iteration
    (s / "multirun.yaml").write_text("hydra: {}\n")
    return s


def test_bootstrap_interval_matches_hand_computation():
    lo, hi = bootstrap_ci(np.array([0.0, 0.0, 0.0, 10.0]))
    assert (lo, hi) == (0.0, 7.5)
    assert bootstrap_ci(np.array([1.0, 2.0, 4.0])) == (1.0, 4.0)
    lo, hi = bootstrap_ci(np.array([[3.0, -1.0], [5.0, 2.0]]))  # per column: two seeds give [min, max]
    assert lo.tolist() == [3.0, -1.0] and hi.tolist() == [5.0, 2.0]
    lo, hi = bootstrap_ci(np.array([2.0]))
    assert math.isnan(lo) and math.isnan(hi)  # one seed: no interval, never a zero-width one


def test_runs_are_grouped_by_config_and_only_finished_ones_averaged(sweep):
    runs = [load_run(d) for d in find_run_dirs(sweep)]
    assert [r.path.name for r in runs] == [str(i) for i in range(10)]
    assert [r.status for r in runs] == ["finished"] * 7 + ["failed", "unfinished", "unfinished"]
    groups = {g.config: g for g in group_runs(runs)}
    assert set(groups) == {"algo.inner_lr=0.1", "algo.inner_lr=0.2"}  # seed and launcher are not config
    a, b = groups["algo.inner_lr=0.1"], groups["algo.inner_lr=0.2"]
    assert a.stats["objective"] == (2.5, 0.0, 7.5, 4)
    mean, lo, hi, n = b.stats["objective"]
    assert mean == pytest.approx(7 / 3) and (lo, hi, n) == (1.0, 4.0, 3)
    assert b.stats["heldout_pre_adapt"][:3] == pytest.approx((4 / 3, 0.0, 3.0))
    x, m, lo, hi = learning_curves(b, "meta_train/return_post_adapt")  # returns [[1, 2], [2, 3], [4, 5]]
    assert x.tolist() == [100, 200] and m == pytest.approx([7 / 3, 10 / 3])
    assert lo.tolist() == [1.0, 2.0] and hi.tolist() == [4.0, 5.0]
    assert isinstance(a, Group) and len(a.runs) == 4


def test_dmrl_report_cli(sweep, tmp_path, cli_env):
    proc = subprocess.run(["dmrl-report", str(sweep)], cwd=tmp_path, env=cli_env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = sweep / "report"
    rows = {r["config"]: r for r in csv.DictReader(open(out / "results.csv"))}
    assert rows["algo.inner_lr=0.1"]["seeds"] == "4"
    assert [float(rows["algo.inner_lr=0.1"][f"objective_{k}"]) for k in ("mean", "ci95_low", "ci95_high")] == [2.5, 0, 7.5]
    assert float(rows["algo.inner_lr=0.2"]["objective_mean"]) == pytest.approx(7 / 3, abs=1e-5)
    assert "| algo.inner_lr=0.1 | 4 | 2.500 [0.000, 7.500] |" in proc.stdout
    assert "| algo.inner_lr=0.2 | 3 | 2.333 [1.000, 4.000] |" in proc.stdout
    assert "10 runs (7 finished, 1 failed, 2 unfinished)" in proc.stdout
    failed = [line for line in proc.stdout.splitlines() if "| failed |" in line]
    assert len(failed) == 1 and "sweep/7" in failed[0] and "surrogate loss is nan" in failed[0]
    assert len([line for line in proc.stdout.splitlines() if "| unfinished |" in line]) == 2
    statuses = {Path(r["run"]).name: (r["status"], r["last_iteration"]) for r in csv.DictReader(open(out / "runs.csv"))}
    assert statuses["7"] == ("failed", "3") and statuses["8"] == ("unfinished", "1") and statuses["9"] == ("unfinished", "0")
    md = (out / "results.md").read_text()
    assert "Not averaged (3 failed or unfinished)" in md and "learning_curves.png" in md
    for png in ("learning_curves.png", "adaptation.png"):
        assert (out / png).stat().st_size > 5000


def test_dmrl_report_several_dirs_and_out(sweep, tmp_path, cli_env):
    proc = subprocess.run(["dmrl-report", str(sweep / "0"), str(sweep / "4"), str(sweep / "0"), "--out", "rep"],
                          cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "2 runs (2 finished" in proc.stdout  # a run named twice counts once
    assert (tmp_path / "rep/results.csv").is_file()


@pytest.mark.parametrize("arg,expect", [("nope", "is not a directory"), ("empty", "no runs under")])
def test_dmrl_report_bad_input_is_one_line(tmp_path, cli_env, arg, expect):
    (tmp_path / "empty").mkdir()
    proc = subprocess.run(["dmrl-report", arg], cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and expect in lines[0], proc.stderr


def _tear_middle_line(sweep: Path) -> tuple[str, str]:
    path = sweep / "7/metrics.jsonl"  # three records: tear the second
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[1][:25] + "\n" + lines[2])
    return "7/metrics.jsonl: line 2", "failed"


def _string_objective(sweep: Path) -> tuple[str, str]:
    path = sweep / "0/summary.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "objective": "abc"}))
    return "0/summary.json: objective must be a number", "corrupt"


def _corrupt_summary(sweep: Path) -> tuple[str, str]:
    (sweep / "4/summary.json").write_text('{"status": "finished", "objec')
    return "4/summary.json: not JSON", "corrupt"


def _overrides_not_yaml(sweep: Path) -> tuple[str, str]:
    (sweep / "9/.hydra/overrides.yaml").write_text("- [seed=4\n")
    return "9/.hydra/overrides.yaml: not readable as YAML", "unfinished"


def _overrides_not_a_list(sweep: Path) -> tuple[str, str]:
    (sweep / "9/.hydra/overrides.yaml").write_text("seed: 4\n")
    return "9/.hydra/overrides.yaml: a YAML list of override strings is expected", "unfinished"


@pytest.mark.parametrize("damage", [_tear_middle_line, _string_objective, _corrupt_summary, _overrides_not_yaml,
                                    _overrides_not_a_list])
def test_dmrl_report_unreadable_file_of_one_run_is_one_warning(sweep, tmp_path, cli_env, damage):
    expect, status = damage(sweep)
    run_name = expect.split("/")[0]
    proc = subprocess.run(["dmrl-report", str(sweep)], cwd=tmp_path, env=cli_env, capture_output=True, text=True,
                          timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 0 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("dmrl-report: warning: ") and f"{sweep}/{expect}" in lines[0], lines[0]
    rows = [line for line in proc.stdout.splitlines() if line.startswith(f"| {sweep}/{run_name} |")]
    assert len(rows) == 1 and f"| {status} |" in rows[0], proc.stdout  # listed, not averaged
    statuses = {Path(r["run"]).name: r["status"] for r in csv.DictReader(open(sweep / "report/runs.csv"))}
    assert statuses[run_name] == status and len(statuses) == 10
    assert expect.split(":")[0] in (sweep / "report/results.md").read_text()  # the warning is in the report too
    if status == "corrupt":  # a corrupt summary is neither finished nor unfinished
        assert "(6 finished, 1 failed, 2 unfinished, 1 corrupt)" in proc.stdout
    if damage is _tear_middle_line:  # the lines after the torn one still count for the last iteration
        assert "| failed | algo.inner_lr=0.2 | 3 | 3 | surrogate loss is nan" in rows[0]


@pytest.mark.parametrize("out,expect", [("afile/report", "cannot create --out afile/report: Not a directory"),
                                        ("afile", "--out afile is an existing file, not a directory")])
def test_dmrl_report_out_that_cannot_be_written_is_one_error(sweep, tmp_path, cli_env, out, expect):
    (tmp_path / "afile").write_text("not a directory\n")
    proc = subprocess.run(["dmrl-report", str(sweep), "--out", out], cwd=tmp_path, env=cli_env, capture_output=True,
                          text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines == [f"dmrl-report: error: {expect}"], proc.stderr
    assert (tmp_path / "afile").read_text() == "not a directory\n"


def test_dmrl_report_permission_error_while_writing_is_one_error(sweep, tmp_path, monkeypatch, capsys):
    # as root, chmod does not stop a write: make the write itself fail as it would for a user
    import dmrl.report
    from dmrl.cli.report import main

    def denied(runs, out):
        raise PermissionError(13, "Permission denied", str(out / "results.csv"))

    monkeypatch.setattr(dmrl.report, "write_report", denied)
    with pytest.raises(SystemExit) as exit_:
        main([str(sweep), "--out", str(tmp_path / "rep")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1, err
    assert err[0] == f"dmrl-report: error: cannot write the report into {tmp_path / 'rep'}: Permission denied " \
                     f"({tmp_path / 'rep/results.csv'})"


def test_read_summary_rejects_wrong_types_strictly_and_reads_them_as_none_otherwise(tmp_path):
    from dmrl.summary import read_summary

    good = {"status": "finished", "objective": 1.5, "overrides": ["seed=0"], "heldout": {"return_mean": [0.0, None]}}
    (tmp_path / "summary.json").write_text(json.dumps(good))
    assert read_summary(tmp_path, strict=True) == good
    for bad, why in ((dict(good, objective="abc"), "objective must be a number or null, got 'abc'"),
                     (dict(good, status="running"), "status must be"),
                     (dict(good, overrides="seed=0"), "overrides must be a list of strings"),
                     (dict(good, heldout={"return_mean": ["x"]}), "heldout.return_mean must be a list of numbers"),
                     ([1, 2], "a JSON object is expected, got list")):
        (tmp_path / "summary.json").write_text(json.dumps(bad))
        assert read_summary(tmp_path) is None  # a re-launched sweep runs such a job again
        with pytest.raises(ValueError, match=why):
            read_summary(tmp_path, strict=True)
    (tmp_path / "summary.json").unlink()
    assert read_summary(tmp_path, strict=True) is None


def test_success_as_the_objective(tmp_path, cli_env):
    """``--objective success``: the objective column holds each run's held-out success after adapting
    (exact bootstrap interval of two seeds: [a, b]); without success in any run the column is left out."""
    s = tmp_path / "mw"
    for seed, rate in enumerate([0.25, 0.75]):
        write_run(s / str(seed), ["env=metaworld", f"seed={seed}"], "finished", 100.0 + seed, returns=[1.0, 2.0])
        summary = json.loads((s / str(seed) / "summary.json").read_text())
        summary["heldout"]["success_mean"] = [0.0, rate]
        (s / str(seed) / "summary.json").write_text(json.dumps(summary))
    proc = subprocess.run(["dmrl-report", str(s), "--objective", "success", "--out", str(tmp_path / "r")],
                          env=cli_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "objective: heldout/success_after_adapting" in proc.stdout
    assert "| env=metaworld | 2 | 0.500 [0.250, 0.750] |" in proc.stdout
    plain = subprocess.run(["dmrl-report", str(s), "--out", str(tmp_path / "p")], env=cli_env, capture_output=True,
                           text=True, timeout=120)
    assert "| 100.500 [100.000, 101.000] |" in plain.stdout and "held-out success after adapting" in plain.stdout


def test_no_success_column_without_success(sweep, tmp_path, cli_env):
    proc = subprocess.run(["dmrl-report", str(sweep), "--out", str(tmp_path / "r")], env=cli_env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "success" not in proc.stdout.split("Not averaged")[0]
