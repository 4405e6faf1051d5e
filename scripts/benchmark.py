#!/usr/bin/env python
"""Seconds per meta-iteration of dmrl's reference configurations (``make bench``).

    python scripts/benchmark.py                          # every case, a table
    python scripts/benchmark.py --case maml_point_nav --json

``maml_point_nav``: point_nav, meta-batch 20, 20 episodes per task, horizon 100, 1 inner step,
[64, 64] tanh, 10 CG iterations, second order. A widely used PyTorch MAML port needs 4.4 s per
meta-iteration for this on a 2-core machine. Both MAML cases compute the TRPO curvature on full
batches, as the port does (``meta_optimizer.fvp_subsample=1.0``).

``maml_point_nav_default``: the same with dmrl's default ``meta_optimizer.fvp_subsample=0.1``
(curvature products on 10% of each task's episodes, as in Schulman's TRPO).

``maml_cheetah_vel``: cheetah_vel, meta-batch 40, 20 episodes per task, horizon 100, otherwise as
above (160,000 env steps per iteration). The same port needs 14.0 s (11,400 env steps/s). This
case also measures, in the same process, the physics limit (single-thread ``mj_step`` on the
HalfCheetah model, per core and times the cores), gymnasium's ``HalfCheetah-v5`` in a plain loop,
and dmrl's sampler alone.

``rl2_bandit``: RL²-PPO training as in ``experiment=rl2_bandit`` (5-armed bandits, trials of 10
pulls, GRU 48, 2,000 tasks x 2 trials = 40,000 env steps per iteration, 2 PPO epochs of one
minibatch); target at least 200,000 env steps/s on 2 cores, sampling and PPO updates included.

``rl2_tabular_mdp``: RL²-PPO training as in ``experiment=rl2_tabular_mdp`` (GRU 128, 500 trials of
100 steps per iteration, 4 PPO epochs x 8 minibatches). The issue's budget is 20 minutes on 2 cores
for the preset's iterations; the case reports seconds per iteration against that budget divided by
the preset's iteration count, and how the time splits between sampling and the PPO update.

``sweep_local`` (only when named): wall clock of a 2 x 2 sweep of short point_nav runs
(``algo.inner_lr=0.05,0.1 seed=0,1``, 8 meta-iterations each, otherwise ``maml_point_nav``) run by
``dmrl-train -m`` twice in one go: sequentially (Hydra's basic launcher, each job using every
core) and with ``launcher=local`` (joblib, one job per core). The target is a ratio below 0.6.
A third, sequential run with one torch thread per job (``OMP_NUM_THREADS=1``) separates the gain
of running jobs side by side from that of avoiding thread contention on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from dmrl.build import build
from dmrl.config import CONF_DIR

POINT_NAV_REFERENCE = ["env=point_nav", "algo=maml", "meta_optimizer=trpo", "algo.meta_batch_size=20",
                       "algo.fast_batch_size=20", "env.horizon=100", "algo.inner_steps=1",
                       "policy.hidden_sizes=[64,64]", "policy.activation=tanh", "meta_optimizer.cg_iters=10",
                       "algo.first_order=false"]

CASES: dict[str, dict] = {
    "maml_point_nav": {
        "overrides": [*POINT_NAV_REFERENCE, "meta_optimizer.fvp_subsample=1.0"],
        "reference_sec_per_iteration": 4.4,
        "target_sec_per_iteration": 0.4,
    },
    "maml_point_nav_default": {  # the same with dmrl's default curvature subsample
        "overrides": [*POINT_NAV_REFERENCE, "meta_optimizer.fvp_subsample=0.1"],
        "reference_sec_per_iteration": 4.4,
        "target_sec_per_iteration": 0.4,
    },
    "maml_cheetah_vel": {
        "overrides": ["env=cheetah_vel", "algo=maml", "meta_optimizer=trpo", "algo.meta_batch_size=40",
                      "algo.fast_batch_size=20", "env.horizon=100", "algo.inner_steps=1",
                      "policy.hidden_sizes=[64,64]", "policy.activation=tanh", "meta_optimizer.cg_iters=10",
                      "algo.first_order=false", "meta_optimizer.fvp_subsample=1.0"],
        "reference_sec_per_iteration": 14.0,
        "target_sec_per_iteration": 4.0,
        "extra": "mujoco",
    },
    "rl2_bandit": {
        "overrides": ["experiment=rl2_bandit"],
        "target_env_steps_per_sec": 200_000,
    },
    "rl2_tabular_mdp": {
        "overrides": ["experiment=rl2_tabular_mdp"],
        "budget_sec": 20 * 60,  # the whole preset run
    },
}


def physics_limit(seconds: float = 3.0) -> dict:
    """Single-thread ``mj_step`` on gymnasium's HalfCheetah model, as env steps/s (frame skip 5)."""
    import mujoco

    from dmrl.envs.mujoco_base import default_threads, load_model

    model = load_model("half_cheetah.xml")
    data = mujoco.MjData(model)
    rng = np.random.default_rng(0)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        data.ctrl[:] = rng.uniform(-1, 1, model.nu)
        for _ in range(1000):
            mujoco.mj_step(model, data)
        steps += 1000
    per_core = steps / (time.perf_counter() - t0) / 5
    cores = default_threads()
    return {"physics_limit_env_steps_per_sec_per_core": per_core, "physics_limit_cores": cores,
            "physics_limit_env_steps_per_sec": per_core * cores}


def gymnasium_loop(seconds: float = 3.0) -> float:
    """gymnasium's ``HalfCheetah-v5`` stepped in a plain single-process loop (env steps/s)."""
    import gymnasium

    env = gymnasium.make("HalfCheetah-v5")
    env.reset(seed=0)
    env.action_space.seed(0)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(500):
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            if term or trunc:
                env.reset()
        steps += 500
    return steps / (time.perf_counter() - t0)


def sampler_alone(parts, repeats: int = 3) -> float:
    """dmrl's sampler on the case's meta-batch with the meta-parameters (env steps/s)."""
    algo = parts.algo
    tasks = algo.sample_tasks()
    algo.sampler.sample(tasks)
    steps, t0 = 0, time.perf_counter()
    for _ in range(repeats):
        steps += algo.sampler.sample(tasks).env_steps
    return steps / (time.perf_counter() - t0)


def bench(case: str, iterations: int, warmup: int, device: str, overrides: list[str] = ()) -> dict:
    spec = CASES[case]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=[*spec["overrides"], f"device={device}", *overrides])
    parts = build(cfg)
    algo = parts.algo
    sample_s: list[float] = []
    real_sample = algo.sampler.sample

    def timed_sample(*a, **k):
        t = time.perf_counter()
        out = real_sample(*a, **k)
        if parts.device.type == "cuda":
            torch.cuda.synchronize()
        sample_s.append(time.perf_counter() - t)
        return out

    algo.sampler.sample = timed_sample
    times, steps, sampling = [], [], []
    for i in range(warmup + iterations):
        sample_s.clear()
        t = time.perf_counter()
        m = algo.meta_step()
        if parts.device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
        if i >= warmup:
            times.append(dt)
            steps.append(m["env_steps"])
            sampling.append(sum(sample_s))
    sec = statistics.median(times)
    extra: dict = {}
    if spec.get("extra") == "mujoco":
        extra.update(physics_limit())
        extra["gymnasium_env_steps_per_sec"] = gymnasium_loop()
        extra["sampler_env_steps_per_sec"] = sampler_alone(parts)
        extra["sampler_fraction_of_physics_limit"] = (
            extra["sampler_env_steps_per_sec"] / extra["physics_limit_env_steps_per_sec"])
    return {
        "case": case,
        "device": str(parts.device),
        "threads": torch.get_num_threads(),
        "iterations": iterations,
        "sec_per_iteration": sec,
        "sec_per_iteration_mean": statistics.mean(times),
        "sampling_sec_per_iteration": statistics.median(sampling),
        "env_steps_per_iteration": statistics.mean(steps),
        "env_steps_per_sec": statistics.mean(steps) / sec,
        **_targets(spec, sec, int(cfg.iterations)),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        **extra,
    }


def _targets(spec: dict, sec: float, iterations: int) -> dict:
    """The case's reference and target figures next to the measured seconds per iteration."""
    if "reference_sec_per_iteration" in spec:
        return {"reference_sec_per_iteration": spec["reference_sec_per_iteration"],
                "speedup_vs_reference": spec["reference_sec_per_iteration"] / sec,
                "target_sec_per_iteration": spec["target_sec_per_iteration"]}
    if "budget_sec" in spec:
        return {"budget_sec": spec["budget_sec"], "preset_iterations": iterations,
                "target_sec_per_iteration": spec["budget_sec"] / iterations,
                "projected_run_sec": sec * iterations}
    return {"target_env_steps_per_sec": spec["target_env_steps_per_sec"]}


SWEEP_GRID = ["algo.inner_lr=0.05,0.1", "seed=0,1"]
SWEEP_RUN = ["iterations=8", "logger=jsonl"]


def bench_sweep_local() -> dict:
    """Sequential vs ``launcher=local`` wall clock of one small sweep, measured back to back."""
    train = str(Path(sys.executable).parent / "dmrl-train")
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        one_thread = {**os.environ, "OMP_NUM_THREADS": "1"}
        for name, launcher, env in (("sequential", [], None), ("local", ["launcher=local"], None),
                                    ("sequential_1thread", [], one_thread)):
            cmd = [train, "-m", *CASES["maml_point_nav"]["overrides"], *SWEEP_RUN, *SWEEP_GRID, *launcher,
                   f"hydra.sweep.dir={tmp}/{name}"]
            t = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times[name] = time.perf_counter() - t
            finished = len(list(Path(tmp, name).glob("*/summary.json")))
            if finished != 4:
                raise RuntimeError(f"{name} sweep finished {finished} of 4 jobs")
    return {"case": "sweep_local", "jobs": 4, "grid": SWEEP_GRID, "run": SWEEP_RUN,
            "sequential_s": times["sequential"], "local_s": times["local"],
            "ratio": times["local"] / times["sequential"], "target_ratio": 0.6,
            "sequential_1thread_s": times["sequential_1thread"],
            "ratio_vs_sequential_1thread": times["local"] / times["sequential_1thread"],
            "cores": os.cpu_count(), "load_average_1min": os.getloadavg()[0], "torch": torch.__version__}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", choices=[*sorted(CASES), "sweep_local"], action="append",
                   help="case(s) to run (default: every meta-iteration case; sweep_local only when named)")
    p.add_argument("--iterations", type=int, default=10, help="timed meta-iterations (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed meta-iterations first")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--json", action="store_true", help="print one JSON object per case")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. algo.first_order=true (not the reference)")
    args = p.parse_args(argv)
    for case in args.case or sorted(CASES):
        if case == "sweep_local":
            r = bench_sweep_local()
            print(json.dumps(r) if args.json else
                  f"sweep_local: 2 x 2 sweep sequential {r['sequential_s']:.1f} s, launcher=local {r['local_s']:.1f} s "
                  f"on {r['cores']} cores -> ratio {r['ratio']:.2f} (target < {r['target_ratio']}); sequential "
                  f"with 1 thread per job {r['sequential_1thread_s']:.1f} s -> {r['ratio_vs_sequential_1thread']:.2f}")
            sys.stdout.flush()
            continue
        r = bench(case, args.iterations, args.warmup, args.device, args.overrides)
        r["overrides"] = args.overrides
        if args.json:
            print(json.dumps(r))
        else:
            line = (f"{case}: {r['sec_per_iteration']:.3f} s/iteration (median of {r['iterations']}; sampling "
                    f"{r['sampling_sec_per_iteration']:.3f} s), {r['env_steps_per_sec']:.0f} env steps/s on "
                    f"{r['device']} with {r['threads']} threads; ")
            if "reference_sec_per_iteration" in r:
                line += (f"reference {r['reference_sec_per_iteration']} s -> {r['speedup_vs_reference']:.1f}x; "
                         f"target {r['target_sec_per_iteration']} s")
            elif "budget_sec" in r:
                line += (f"{r['preset_iterations']} iterations -> {r['projected_run_sec'] / 60:.1f} min "
                         f"(budget {r['budget_sec'] / 60:.0f} min: {r['target_sec_per_iteration']:.2f} s/iteration)")
            else:
                line += f"target {r['target_env_steps_per_sec']:.0f} env steps/s"
            print(line)
            if "physics_limit_env_steps_per_sec" in r:
                print(f"  physics limit {r['physics_limit_env_steps_per_sec_per_core']:.0f} env steps/s per core x "
                      f"{r['physics_limit_cores']} = {r['physics_limit_env_steps_per_sec']:.0f}; gymnasium loop "
                      f"{r['gymnasium_env_steps_per_sec']:.0f}; dmrl sampler {r['sampler_env_steps_per_sec']:.0f} "
                      f"({100 * r['sampler_fraction_of_physics_limit']:.0f}% of the limit)")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
