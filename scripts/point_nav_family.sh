#!/usr/bin/env bash
# Train the gradient-based family and the baselines on 2-D navigation with their presets, two runs at
# a time (one torch thread each), then evaluate every checkpoint on the same 1,000 held-out tasks
# (seed 7) and print one table: the numbers docs/results.md quotes (issue 14).
#   bash scripts/point_nav_family.sh [OUT_DIR] [NAMES...]     (default: outputs/family, every preset)
# A run dir with a checkpoint but no summary (killed, or its final evaluation failed) is resumed. To
# keep editing the tree while it runs, point SRC at a snapshot (git worktree): SRC=/tmp/snap/src.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
if [ -n "${SRC:-}" ]; then export PYTHONPATH="$SRC"; fi
OUT=${1:-outputs/family}
shift || true
NAMES=("${@:-maml promp maml_vpg maml_ppo meta_sgd multitask oracle}")
read -r -a NAMES <<< "${NAMES[*]}"
mkdir -p "$OUT"
train() {  # NAME: experiment=NAME_point_nav into OUT/NAME, wall time in OUT/NAME.time (a resume: NAME.resume.time)
  local name=$1 args=("experiment=${name}_point_nav" logger=jsonl seed=0 "hydra.run.dir=$OUT/$name" overwrite=true)
  local timing="$OUT/$name.time"
  if [ -f "$OUT/$name/checkpoints/last.pt" ]; then
    args=("resume=$OUT/$name/checkpoints/last.pt"); timing="$OUT/$name.resume.time"
  fi
  OMP_NUM_THREADS=1 /usr/bin/time -f "%e s wall, %U s user, %S s system" -o "$timing" \
    "$BIN/dmrl-train" "${args[@]}" >> "$OUT/$name.log" 2>&1 || echo "$name: dmrl-train failed (see $OUT/$name.log)"
}
running=0
for name in "${NAMES[@]}"; do
  [ -f "$OUT/$name/summary.json" ] && continue
  train "$name" &
  running=$((running + 1))
  if [ "$running" -ge 2 ]; then wait -n || true; running=$((running - 1)); fi
done
wait
for name in "${NAMES[@]}"; do
  OMP_NUM_THREADS=2 "$BIN/dmrl-eval" "checkpoint=$OUT/$name/checkpoints/last.pt" num_tasks=1000 seed=7 adapt_steps=1 \
    "hydra.run.dir=$OUT/eval_$name" > "$OUT/eval_$name.log" 2>&1
done
"$BIN/python" - "$OUT" "${NAMES[@]}" <<'PY'
import json, sys
out, names = sys.argv[1], sys.argv[2:]
print("| preset | iterations | env steps | train wall | 0 steps | 1 step (mean ± 95% CI, 1,000 tasks, seed 7) |")
print("|---|---|---|---|---|---|")
for n in names:
    s = json.load(open(f"{out}/{n}/summary.json"))
    e = json.load(open(f"{out}/eval_{n}/eval.json"))
    wall = open(f"{out}/{n}.time").read().split(" s wall")[0]
    m, c = e["return_mean"], e["return_ci95"]
    print(f"| {n}_point_nav | {s['iteration']} | {s['env_steps']:,} | {float(wall):.0f} s | {m[0]:.1f} ± {c[0]:.1f} "
          f"| **{m[1]:.1f} ± {c[1]:.1f}** |")
PY
