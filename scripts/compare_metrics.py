"""Do two dmrl source trees compute the same numbers? Train and evaluate with each, compare.

A restructure must not change what dmrl computes: this runs the same jobs with a reference tree
(e.g. a ``git worktree`` of an older commit) and with this checkout, one after the other on this
machine, and compares ``metrics.jsonl`` (the ``time/`` keys left out) and the final evaluation's
numbers exactly. Bit-identical results are only expected on one machine: BLAS picks its kernels per
CPU, so never compare against numbers from another machine.

The cases are written with today's keys; a reference tree from before the algo brought its own
policy, meta-optimizer and sampler (its ``conf/policy/`` holds the training policies) gets them in
their old places (``algo.policy.hidden_size=32`` -> ``policy.hidden_size=32``).

    git worktree add /tmp/ref <commit>
    python scripts/compare_metrics.py --ref /tmp/ref/src            # default job, 20 iterations
    python scripts/compare_metrics.py --ref /tmp/ref/src --case rl2_bandit
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "src"
CASES = {
    "default": ["iterations=20", "seed=0"],  # the default job (MAML-TRPO on point_nav), its first 20 iterations
    "rl2_bandit": ["env=bandit", "algo=rl2", "iterations=10", "algo.meta_batch_size=16", "algo.trials_per_task=4",
                   "algo.episodes_per_trial=10", "algo.policy.hidden_size=32"],
    "cheetah_vel": ["env=cheetah_vel", "iterations=2", "algo.meta_batch_size=4", "algo.fast_batch_size=4",
                    "env.horizon=50", "final_eval.num_tasks=4"],
    "pearl_point_robot": ["experiment=pearl_point_robot", "iterations=3", "algo.num_train_steps=20",
                          "algo.num_initial_steps=100", "final_eval.num_tasks=20"],
    # the reference's collection: posterior steps in rounds, one posterior per trajectory (update_post_train=1)
    "pearl_sparse_point_robot": ["experiment=pearl_sparse_point_robot", "iterations=2", "algo.num_train_steps=20",
                                 "final_eval.num_tasks=20"],
}
COMMON = ["logger=jsonl", "device=cpu"]
PARTS = ("policy", "meta_optimizer", "sampler")  # the algo's own since checkpoint format 3 (dmrl.learner.PARTS)


def for_tree(src: Path, args: list[str]) -> list[str]:
    """``args`` as the tree at ``src`` takes them: a tree whose train config has the policy,
    meta-optimizer and sampler at the top level gets ``algo.policy.X`` as ``policy.X`` and
    ``algo/policy=Y`` as ``policy=Y``."""
    if not (src / "dmrl/conf/policy/gaussian_mlp.yaml").is_file():
        return args
    old = []
    for a in args:
        body = a.lstrip("+~")
        if body.startswith(tuple(f"algo{sep}{part}{end}" for part in PARTS for sep, end in ((".", "."), ("/", "=")))):
            body = body[len("algo/"):]  # algo.policy.X -> policy.X, algo/policy=Y -> policy=Y
        old.append(a[: len(a) - len(a.lstrip("+~"))] + body)
    return old


def run_tree(src: Path, args: list[str], workdir: Path) -> tuple[list[dict], dict]:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    cmd = [sys.executable, "-c", "from dmrl.cli.train import main; main()", *COMMON, *for_tree(src, args),
           f"hydra.run.dir={workdir}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{src}: dmrl-train failed:\n{proc.stderr[-2000:]}")
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    records = [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]
    heldout = json.loads((workdir / "summary.json").read_text()).get("heldout") or {}
    numbers = {k: v for k, v in heldout.items()  # the numbers both trees write (newer trees add objective_*)
               if (k.endswith(("_mean", "_ci95")) and not k.startswith("objective")) or k in ("num_tasks", "seed")}
    return records, numbers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ref", type=Path, required=True, help="the reference tree's src/ folder")
    p.add_argument("--case", choices=sorted(CASES), action="append", help="jobs to compare (default: all)")
    args = p.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.case or sorted(CASES):
            ref = run_tree(args.ref, CASES[case], Path(tmp) / f"{case}_ref")
            new = run_tree(HERE, CASES[case], Path(tmp) / f"{case}_new")
            same_metrics = ref[0] == new[0]
            same_eval = ref[1] == new[1]
            print(f"{case}: {len(new[0])} iterations, metrics {'identical' if same_metrics else 'DIFFER'}, "
                  f"final evaluation {'identical' if same_eval else 'DIFFERS'} ({', '.join(sorted(new[1]))})")
            if not same_metrics:
                i = next(i for i, (a, b) in enumerate(zip(ref[0], new[0])) if a != b) if len(ref[0]) == len(new[0]) else -1
                print(f"  first different record: {i}")
            failed |= not (same_metrics and same_eval)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
