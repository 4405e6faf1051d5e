"""Sweeps as a user runs them: launcher presets, a killed and re-launched sweep, Optuna, failed jobs."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from test_cli import SMOKE, metrics, run, without_time

def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # no hydra_plugins package at all
        return False


HAS_JOBLIB = installed("hydra_plugins.hydra_joblib_launcher")
HAS_RAY = installed("ray") and installed("hydra_plugins.hydra_ray_launcher")
HAS_OPTUNA = installed("hydra_plugins.hydra_optuna_sweeper")
HAS_SUBMITIT = installed("hydra_plugins.hydra_submitit_launcher")
needs_joblib = pytest.mark.skipif(not HAS_JOBLIB, reason="hydra-joblib-launcher not installed (pip install -e .[sweep])")


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@needs_joblib
def test_local_launcher_sweep_with_a_failed_job_then_report(tmp_path, cli_env):
    proc = run(["dmrl-train", "-m", *SMOKE, "iterations=1", "algo.inner_lr=1e30,0.1", "seed=0,1", "launcher=local",
                "hydra.sweep.dir=sweep"], tmp_path, cli_env, ok=False)
    assert "Joblib.Parallel" in proc.stdout + proc.stderr
    # jobs 0 and 1 (inner lr 1e30) diverge; the sweep runs the other two and then exits 3 naming the failures
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert proc.stderr.count("dmrl-train: error: job ") == 2 and proc.stderr.count("surrogate loss is nan") == 2
    assert "\ndmrl-train: error: 2 job(s) of the sweep failed, the others ran" in proc.stderr
    for job in (0, 1):
        assert summary(tmp_path / f"sweep/{job}")["status"] == "failed"
    s2, s3 = summary(tmp_path / "sweep/2"), summary(tmp_path / "sweep/3")
    assert s2["status"] == s3["status"] == "finished" and s2["objective"] != s3["objective"]
    # the objective is the held-out return after the inner step
    assert s2["objective_name"] == "heldout/return_post_adapt" and s2["objective"] == s2["heldout"]["return_mean"][-1]
    assert s2["heldout"]["num_tasks"] == 40 and s2["iteration"] == 1 and s2["env_steps"] > 0
    assert "seed=0" in s2["overrides"] and "algo.inner_lr=0.1" in s2["overrides"]

    proc = run(["dmrl-report", "sweep"], tmp_path, cli_env)
    rows = list(csv.DictReader(open(tmp_path / "sweep/report/results.csv")))
    assert len(rows) == 1  # the diverged config has no finished run to average
    row = rows[0]
    objs = sorted([s2["objective"], s3["objective"]])
    assert row["config"] == "algo.inner_lr=0.1 experiment=smoke iterations=1" and row["seeds"] == "2"
    assert float(row["objective_mean"]) == pytest.approx(sum(objs) / 2, rel=1e-5)
    assert [float(row["objective_ci95_low"]), float(row["objective_ci95_high"])] == pytest.approx(objs, rel=1e-5)
    assert "4 runs (2 finished, 2 failed, 0 unfinished)" in proc.stdout
    assert len([line for line in proc.stdout.splitlines() if "| failed |" in line]) == 2


def _state(sweep: Path) -> dict[str, tuple[str, int]]:
    """Each job's status in a sweep dir: finished, or unfinished at its checkpoint's iteration."""
    import torch

    out = {}
    for d in sorted(p for p in sweep.iterdir() if p.name.isdigit()):
        if (d / "summary.json").is_file():
            out[d.name] = ("finished", summary(d)["iteration"])
        elif (d / "checkpoints/last.pt").is_file():
            out[d.name] = ("unfinished", int(torch.load(d / "checkpoints/last.pt", weights_only=True)["iteration"]))
    return out


def test_killed_sweep_relaunch_skips_finished_and_resumes_unfinished(tmp_path, cli_env):
    """SIGKILL a running sweep once a job is done and another is part-way; re-launch the same command."""
    launcher = ["launcher=local"] if HAS_JOBLIB else []
    iterations = 6
    cmd = ["dmrl-train", "-m", *SMOKE, f"iterations={iterations}", "seed=0,1,2", *launcher, "hydra.sweep.dir=sweep"]
    sweep = tmp_path / "sweep"
    log = open(tmp_path / "first_launch.log", "w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            state = _state(sweep) if sweep.is_dir() else {}
            # an unfinished job still short of its last iteration: one at its last may write its summary
            # between this read and the kill (seen in CI: both parallel jobs then read as finished)
            kinds = {s for s, it in state.values() if s == "finished" or 1 <= it < iterations - 1}
            if kinds == {"finished", "unfinished"}:
                break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    state = _state(sweep)
    finished = [j for j, (s, _) in state.items() if s == "finished"]
    unfinished = {j: it for j, (s, it) in state.items() if s == "unfinished"}
    assert finished and unfinished, (f"the kill did not land mid-sweep: {state}, exit {proc.returncode}, "
                                     f"log: {(tmp_path / 'first_launch.log').read_text()[-3000:]}")
    before = {j: ((sweep / j / "summary.json").stat().st_mtime_ns, (sweep / j / "metrics.jsonl").read_text())
              for j in finished}

    proc = run(cmd, tmp_path, cli_env)
    for j in finished:  # not run again: files untouched
        assert f"already finished: {sweep / j} " in proc.stdout
        assert ((sweep / j / "summary.json").stat().st_mtime_ns, (sweep / j / "metrics.jsonl").read_text()) == before[j]
    for j, it in unfinished.items():  # resumed from the checkpoint it had when killed
        assert f"resuming {sweep / j / 'checkpoints/last.pt'} at iteration {it} into {sweep / j}" in proc.stderr
    assert all(summary(sweep / j)["status"] == "finished" for j in map(str, range(3)))

    # a resumed job's metrics equal an uninterrupted run of the same job
    j = next(iter(unfinished))
    overrides = [o for o in summary(sweep / j)["overrides"] if not o.startswith("launcher=")]
    run(["dmrl-train", *overrides, "hydra.run.dir=ref"], tmp_path, cli_env)
    assert [r["iteration"] for r in metrics(sweep / j)] == list(range(1, iterations + 1))
    assert without_time(metrics(sweep / j)) == without_time(metrics(tmp_path / "ref"))
    assert summary(sweep / j)["objective"] == summary(tmp_path / "ref")["objective"]


def test_relaunch_into_a_sweep_dir_of_another_grid_is_refused(tmp_path, cli_env):
    run(["dmrl-train", "-m", *SMOKE, "iterations=1", "seed=0", "hydra.sweep.dir=sweep"], tmp_path, cli_env)
    proc = run(["dmrl-train", "-m", *SMOKE, "iterations=1", "seed=5", "hydra.sweep.dir=sweep"], tmp_path, cli_env,
               ok=False)
    assert proc.returncode == 3
    assert "already holds a run of another config (seed: 0 there, 5 now)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert summary(tmp_path / "sweep/0")["overrides"][-1] == "seed=0"  # the old run is left as it was


@pytest.mark.skipif(not HAS_OPTUNA, reason="hydra-optuna-sweeper not installed (pip install -e .[sweep])")
def test_optuna_search_maximizes_the_jobs_objective(tmp_path, cli_env):
    run(["dmrl-train", "hparams_search=maml_optuna", *SMOKE, "iterations=1", "hydra.sweeper.n_trials=2",
         "hydra.sweeper.n_jobs=1", "hydra.sweep.dir=search"], tmp_path, cli_env)
    import yaml

    result = yaml.safe_load((tmp_path / "search/optimization_results.yaml").read_text())
    objectives = {j: summary(tmp_path / f"search/{j}")["objective"] for j in range(2)}
    best = max(objectives, key=objectives.get)
    assert result["best_value"] == pytest.approx(objectives[best])
    trial = summary(tmp_path / f"search/{best}")["overrides"]
    assert f"algo.inner_lr={result['best_params']['algo.inner_lr']}" in trial


@pytest.mark.skipif(not HAS_RAY, reason="ray or hydra-ray-launcher not installed (pip install -e .[sweep])")
def test_ray_launcher_on_a_local_ray_instance(tmp_path, cli_env):
    env = {**cli_env, "RAY_USAGE_STATS_ENABLED": "0"}
    proc = run(["dmrl-train", "-m", *SMOKE, "iterations=1", "seed=0,1", "launcher=ray", "hydra.sweep.dir=sweep"],
               tmp_path, env)
    assert "Ray Launcher is launching 2 jobs" in proc.stdout + proc.stderr
    s0, s1 = summary(tmp_path / "sweep/0"), summary(tmp_path / "sweep/1")
    assert s0["status"] == s1["status"] == "finished" and s0["objective"] != s1["objective"]


LAUNCH_BAD = [
    (["launcher=nope"], "launcher=nope: no such option; allowed: local, ray, slurm"),
    (["hparams_search=nope"], "hparams_search=nope: no such option; allowed: maml_optuna"),
    (["hydra/launcher=nope"], "hydra/launcher=nope: no such option"),
    (["final_eval.num_tasks=-1"], "final_eval.num_tasks"),
]


@pytest.mark.parametrize("args,expect", LAUNCH_BAD, ids=[" ".join(a) for a, _ in LAUNCH_BAD])
def test_bad_sweep_options_are_one_line(capsys, args, expect):
    """The command line check that runs before Hydra (in-process here; test_cli runs it as a subprocess)."""
    from dmrl.cli.app import precheck
    from dmrl.config import TRAIN_RULES

    with pytest.raises(SystemExit) as exit_:
        precheck("dmrl-train", "train", ["-m", *SMOKE, *args], TRAIN_RULES)
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and expect in lines[0], lines


def test_launcher_presets_compose():
    """The presets set Hydra's launcher as documented (composition needs the plugins' configs)."""
    from hydra import compose, initialize_config_dir

    from dmrl.config import CONF_DIR

    expected = {"local": ("hydra_joblib_launcher", HAS_JOBLIB), "ray": ("hydra_ray_launcher", HAS_RAY),
                "slurm": ("hydra_submitit_launcher", HAS_SUBMITIT)}
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        for name, (module, installed) in expected.items():
            if not installed:
                continue
            cfg = compose(config_name="train", overrides=[f"launcher={name}"], return_hydra_config=True)
            assert module in cfg.hydra.launcher._target_
            if name == "slurm":
                assert cfg.hydra.launcher.max_num_timeout > 0  # time-outs are requeued, and the job resumes
                assert {"partition", "timeout_min", "cpus_per_task", "gpus_per_node"} <= set(cfg.hydra.launcher)
            if name == "ray":
                assert cfg.hydra.launcher.ray.init.address is None
        if HAS_OPTUNA:
            cfg = compose(config_name="train", overrides=["hparams_search=maml_optuna"], return_hydra_config=True)
            assert "optuna" in cfg.hydra.sweeper._target_ and cfg.hydra.sweeper.direction == "maximize"


def _descendants(pid: int) -> list[int]:
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out += children.get(p, [])
        todo += children.get(p, [])
    return out


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SUBMITIT or not Path("/proc/self/stat").exists(),
                    reason="hydra-submitit-launcher not installed (pip install -e .[sweep]), or no /proc")
def test_submitit_requeue_on_timeout_resumes_the_job(tmp_path, cli_env):
    """A job of submitit's local executor gets SIGUSR2, the signal Slurm sends before a time limit or
    a preemption; submitit requeues it, and the requeued job resumes from its checkpoint and ends
    equal to an uninterrupted run."""
    base = [*SMOKE, "iterations=40", "seed=0"]
    cmd = ["dmrl-train", "-m", *base, "hydra/launcher=submitit_local", "hydra.sweep.dir=sweep"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = tmp_path / "sweep/0/metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and (not out.is_file() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.02)
    tasks = [p for p in _descendants(proc.pid) if b"submitit.core._submit" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(tasks) == 1, "the job ended before it could be signalled"
    os.kill(tasks[0], signal.SIGUSR2)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    logs = "".join(p.read_text() for p in (tmp_path / "sweep/.submitit").rglob("*_log.err"))
    assert "SIGUSR2" in logs and "resuming" in logs, logs[-3000:]
    assert [r["iteration"] for r in metrics(tmp_path / "sweep/0")] == list(range(1, 41))
    run(["dmrl-train", *base, "hydra.run.dir=ref"], tmp_path, cli_env)
    assert without_time(metrics(tmp_path / "sweep/0")) == without_time(metrics(tmp_path / "ref"))
    assert summary(tmp_path / "sweep/0")["status"] == "finished"
