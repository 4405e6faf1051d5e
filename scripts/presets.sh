#!/usr/bin/env bash
# Train presets two at a time (one torch thread each), evaluate every checkpoint on the same held-out
# tasks, and print one table: the numbers docs/results.md quotes.
#   bash scripts/presets.sh OUT_DIR PRESET...      e.g. bash scripts/presets.sh outputs/family maml_point_nav promp_point_nav
#   EVAL_ARGS="num_tasks=1000 seed=7 adapt_steps=1" (the default)      dmrl-eval's arguments for every preset
# A run dir with a checkpoint but no summary (killed, or its final evaluation failed) is resumed. To
# keep editing the tree while it runs, point SRC at a snapshot (git worktree): SRC=/tmp/snap/src.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
if [ -n "${SRC:-}" ]; then export PYTHONPATH="$SRC"; fi
OUT=$1
shift
NAMES=("$@")
read -r -a EVAL <<< "${EVAL_ARGS:-num_tasks=1000 seed=7 adapt_steps=1}"
mkdir -p "$OUT"
train() {  # NAME: experiment=NAME into OUT/NAME, wall time in OUT/NAME.time (a resume: NAME.resume.time)
  local name=$1 args=("experiment=$1" logger=jsonl seed=0 "hydra.run.dir=$OUT/$1" overwrite=true)
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
  OMP_NUM_THREADS=2 "$BIN/dmrl-eval" "checkpoint=$OUT/$name/checkpoints/last.pt" "${EVAL[@]}" \
    "hydra.run.dir=$OUT/eval_$name" > "$OUT/eval_$name.log" 2>&1 || echo "$name: dmrl-eval failed (see $OUT/eval_$name.log)"
done
"$BIN/python" - "$OUT" "${NAMES[@]}" <<'PY'
import json, os, re, sys
out, names = sys.argv[1], sys.argv[2:]
def curve(e):
    for key in ("return", "trajectory_return", "episode_return"):
        if f"{key}_mean" in e:
            return e[f"{key}_mean"], e[f"{key}_ci95"]
print("| preset | iterations | env steps | train wall | held-out curve (mean ± 95% CI) | objective | success |")
print("|---|---|---|---|---|---|---|")
for n in names:
    try:
        s = json.load(open(f"{out}/{n}/summary.json"))
        e = json.load(open(f"{out}/eval_{n}/eval.json"))
    except OSError as err:
        print(f"| {n} | missing: {err} |"); continue
    # /usr/bin/time's line (after "Command exited with non-zero status N" where a run was interrupted)
    wall = sum(float(m.group(1)) for x in (".time", ".resume.time") if os.path.exists(f"{out}/{n}{x}")
               for m in [re.search(r"([0-9.]+) s wall", open(f"{out}/{n}{x}").read())] if m)
    m, c = curve(e)
    pts = ", ".join(f"{a:.1f} ± {b:.1f}" for a, b in zip(m, c))
    succ = ", ".join(f"{x:.2f}" for x in e["success_mean"]) if "success_mean" in e else "-"
    print(f"| {n} | {s['iteration']} | {s['env_steps']:,} | {wall:.0f} s | {pts} | {e['objective_name']} "
          f"**{e['objective']:.1f} ± {e['objective_ci95']:.1f}** | {succ} |")
PY
