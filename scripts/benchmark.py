#!/usr/bin/env python
"""Seconds per meta-iteration of dmrl's reference configurations (``make bench``).

    python scripts/benchmark.py                          # every case, a table
    python scripts/benchmark.py --case maml_point_nav --json

``maml_point_nav`` is the reference configuration of issue 2: point_nav, meta-batch 20, 20
episodes per task, horizon 100, 1 inner step, [64, 64] tanh, 10 CG iterations, second order.
The same meta-iteration a widely used PyTorch MAML port needs 4.4 s for on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
from hydra import compose, initialize_config_dir

from dmrl.build import build
from dmrl.config import CONF_DIR

CASES: dict[str, dict] = {
    "maml_point_nav": {
        "overrides": ["env=point_nav", "algo=maml", "meta_optimizer=trpo", "algo.meta_batch_size=20",
                      "algo.fast_batch_size=20", "env.horizon=100", "algo.inner_steps=1",
                      "policy.hidden_sizes=[64,64]", "policy.activation=tanh", "meta_optimizer.cg_iters=10",
                      "algo.first_order=false"],
        "reference_sec_per_iteration": 4.4,
        "target_sec_per_iteration": 0.4,
    },
}


def bench(case: str, iterations: int, warmup: int, device: str) -> dict:
    spec = CASES[case]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=[*spec["overrides"], f"device={device}"])
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
        "reference_sec_per_iteration": spec["reference_sec_per_iteration"],
        "speedup_vs_reference": spec["reference_sec_per_iteration"] / sec,
        "target_sec_per_iteration": spec["target_sec_per_iteration"],
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", choices=sorted(CASES), action="append", help="case(s) to run (default: all)")
    p.add_argument("--iterations", type=int, default=10, help="timed meta-iterations (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed meta-iterations first")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--json", action="store_true", help="print one JSON object per case")
    args = p.parse_args(argv)
    for case in args.case or sorted(CASES):
        r = bench(case, args.iterations, args.warmup, args.device)
        if args.json:
            print(json.dumps(r))
        else:
            print(f"{case}: {r['sec_per_iteration']:.3f} s/iteration (median of {r['iterations']}; sampling "
                  f"{r['sampling_sec_per_iteration']:.3f} s), {r['env_steps_per_sec']:.0f} env steps/s on "
                  f"{r['device']} with {r['threads']} threads; reference {r['reference_sec_per_iteration']} s "
                  f"-> {r['speedup_vs_reference']:.1f}x; target {r['target_sec_per_iteration']} s")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
