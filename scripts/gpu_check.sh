#!/usr/bin/env bash
# One-command check of dmrl on a lent GPU machine: versions, CUDA tests, benchmark cases on CUDA
# with host-device synchronization counts. Writes $OUT/gpu_check.json (every figure) and
# $OUT/gpu_check.log (every step's output).
#
#   bash scripts/gpu_check.sh                  # there: from the repo root, gpu_wheels/ carried
#   GPU_CHECK_DRY=1 PYTHON=.venv/bin/python OUT=/tmp/gc bash scripts/gpu_check.sh   # here, on the CPU
#
# Made for a machine with its own Python 3.12 and CUDA torch and no network (`make gpu-wheels`
# fetches the rest here). Choices:
# - Packages go into a --target folder on PYTHONPATH, as the device notes advise, not a venv: the
#   image's python3 is itself a venv (/opt/torch/.venv), so `venv --system-site-packages` would
#   see the base interpreter's packages and not its torch, and `pip install --user` is refused
#   inside a venv. Only wheels whose distribution the image lacks are installed, so nothing the
#   image has (torch, numpy, ...) is ever shadowed.
# - dmrl itself runs from src/ (PYTHONPATH), not `pip install -e .`: an editable install cannot go
#   into a --target folder, and the checks need no console scripts.
# - Every step runs under `timeout`, inside one overall budget (GPU_CHECK_BUDGET, default 450 s):
#   a step that would start with under 20 s left is skipped, a failing step does not stop the
#   others, and the JSON is written whatever happened.
# - No CUDA (or GPU_CHECK_DRY=1): CUDA-only parts are skipped and the cases run 1 iteration on the
#   CPU with algo.meta_batch_size=8, so the script can be tried end to end anywhere.
# GPU_CHECK_STEPS=env,install,... runs only the named steps (the JSON is always written).
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
LOG=$OUT/gpu_check.log
: >"$LOG"
PY=${PYTHON:-python3}
WHEELS=${GPU_WHEELS_DIR:-$ROOT/gpu_wheels}
SITE=${GPU_CHECK_SITE:-/tmp/dmrl_gpu_site}
WORK=$(mktemp -d)
BUDGET=${GPU_CHECK_BUDGET:-450}
T0=$(date +%s)
DEADLINE=$((T0 + BUDGET))
export PYTHONPATH="$ROOT/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HYDRA_FULL_ERROR=1
export MPLBACKEND=Agg

if [ "${GPU_CHECK_DRY:-0}" = 1 ] || ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  DRY=1; DEVICE=cpu
else
  DRY=0; DEVICE=cuda
fi
echo "gpu_check: dry=$DRY device=$DEVICE python=$PY budget=${BUDGET}s out=$OUT" | tee -a "$LOG"

wanted() { [ -z "${GPU_CHECK_STEPS:-}" ] || [[ ",$GPU_CHECK_STEPS," == *",$1,"* ]]; }

# step NAME LIMIT_S CMD...: run CMD under timeout, log it, record rc and wall time in steps.tsv
step() {
  local name=$1 limit=$2; shift 2
  wanted "$name" || return 0
  local left=$((DEADLINE - $(date +%s)))
  if [ "$left" -lt 20 ]; then
    echo "=== $name: skipped, ${left}s of the budget left" | tee -a "$LOG"
    printf '%s\tskipped\t0\t0\n' "$name" >>"$WORK/steps.tsv"
    return 0
  fi
  [ "$limit" -le $((left - 10)) ] || limit=$((left - 10))
  echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
  local t1 t2 rc
  t1=$(date +%s.%N)
  if declare -F "$1" >/dev/null; then  # a function of this script: timeout needs a program
    timeout -k 10 "$limit" bash -c '"$@"' _ "$@" >"$WORK/$name.out" 2>&1
  else
    timeout -k 10 "$limit" "$@" >"$WORK/$name.out" 2>&1
  fi
  rc=$?
  t2=$(date +%s.%N)
  cat "$WORK/$name.out" >>"$LOG"
  echo "=== $name: rc=$rc in $(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.1f", b - a }')s" | tee -a "$LOG"
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$t1" "$t2" >>"$WORK/steps.tsv"
}

env_info() {
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.sm,power.limit --format=csv
  else
    echo "no nvidia-smi"
  fi
  "$PY" - <<'EOF'
import json, platform, sys
import torch
info = {"python": platform.python_version(), "python_executable": sys.executable, "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, gpu_capability=f"{p.major}.{p.minor}", gpu_memory_gib=round(p.total_memory / 2**30, 1),
                cudnn=torch.backends.cudnn.version())
for mod in ("numpy", "setuptools", "pytest"):
    try:
        info[mod] = __import__(mod).__version__
    except ImportError:
        info[mod] = None
print("ENV_JSON " + json.dumps(info))
EOF
}

install_wheels() {
  ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "no wheels in $WHEELS (make gpu-wheels, carry gpu_wheels)"; return 1; }
  # the wheels whose distribution this Python lacks (the image's own packages stay as they are)
  "$PY" - "$WHEELS" >"$WORK/missing.txt" <<'EOF'
import re, sys
from importlib import metadata
from pathlib import Path
have = {re.sub(r"[-_.]+", "_", d.metadata["Name"]).lower() for d in metadata.distributions() if d.metadata["Name"]}
for w in sorted(Path(sys.argv[1]).glob("*.whl")):
    name = w.name.split("-")[0].lower()
    print(("" if name in have else "install ") + str(w))
EOF
  sed -n 's/^install //p' "$WORK/missing.txt" >"$WORK/to_install.txt"
  echo "already there: $(grep -vc '^install ' "$WORK/missing.txt"), to install: $(wc -l <"$WORK/to_install.txt")"
  grep -v '^install ' "$WORK/missing.txt" | xargs -r -n1 basename | sed 's/^/  kept (image has it): /'
  [ -s "$WORK/to_install.txt" ] || return 0
  xargs -a "$WORK/to_install.txt" "$PY" -m pip install --no-index --no-deps --no-compile --no-cache-dir \
    --disable-pip-version-check --upgrade --target "$SITE"
}

import_check() {
  "$PY" - <<'EOF'
import json
from importlib import metadata
import dmrl.build, dmrl.loop, gymnasium, hydra, mujoco, omegaconf, torch  # noqa: F401
v = {}
for d in ("hydra-core", "omegaconf", "gymnasium", "mujoco", "numpy", "torch", "pytest", "tqdm", "PyYAML"):
    try:
        v[d] = metadata.version(d)
    except metadata.PackageNotFoundError:
        v[d] = None
print("IMPORT_JSON " + json.dumps({"versions": v, "dmrl_from": dmrl.build.__file__}))
EOF
}

pytest_step() {  # NAME LIMIT PYTEST-ARGS...
  local name=$1 limit=$2; shift 2
  step "$name" "$limit" "$PY" -m pytest -q -p no:cacheprovider --junitxml="$WORK/$name.xml" "$@"
}

export -f env_info install_wheels import_check
export PY WORK WHEELS SITE

bench_step() {  # NAME LIMIT DEVICE ITERATIONS WARMUP BUDGET_S CASE [extra args]
  local name=$1 limit=$2 dev=$3 it=$4 wu=$5 tb=$6 case=$7; shift 7
  step "$name" "$limit" "$PY" scripts/benchmark.py --json --device "$dev" --case "$case" --iterations "$it" \
    --warmup "$wu" --time-budget "$tb" "$@" $SMALL
}

step env 60 env_info
if [ "$DRY" = 1 ] && ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
  echo "=== install: skipped (dry run on Python $("$PY" -c 'import platform; print(platform.python_version())'), the wheels are for 3.12)" | tee -a "$LOG"
  wanted install && printf 'install\tskipped\t0\t0\n' >>"$WORK/steps.tsv"
else
  step install 90 install_wheels
fi
step import 60 import_check

# Most wanted first: later steps are the ones the budget skips.
if [ "$DRY" = 1 ]; then
  pytest_step pytest_cuda 120 -m cuda tests/test_maml_curvature.py     # collects, skips without CUDA
  IT=1; WU=0; TB=5; SMALL=algo.meta_batch_size=8   # the plumbing, not the reference sizes
else
  pytest_step pytest_cuda 120 -m cuda --continue-on-collection-errors tests/
  IT=10; WU=3; TB=20; SMALL=
fi
bench_step bench_maml_point_nav_default 75 "$DEVICE" $IT $WU $TB maml_point_nav_default --count-syncs --count-flops
bench_step bench_maml_point_nav 75 "$DEVICE" $IT $WU $TB maml_point_nav --count-syncs --count-flops
bench_step bench_rl2_bandit 60 "$DEVICE" $IT $WU $TB rl2_bandit --count-syncs
bench_step bench_rl2_tabular_mdp 90 "$DEVICE" $IT $WU $TB rl2_tabular_mdp --count-syncs
if [ "$DRY" = 1 ]; then
  pytest_step pytest_fast 120 -x tests/test_rl2.py -k "clipped or gae or fresh_hidden"
else
  pytest_step pytest_cuda_families 120 tests/test_families.py -k cuda   # 2-iteration runs on cuda
  pytest_step pytest_fast 150 -x tests/test_maml_curvature.py tests/test_rl2.py
fi
# the headline figures again without the split's synchronizations at region ends
bench_step bench_maml_point_nav_default_nosplit 60 "$DEVICE" $IT $WU $TB maml_point_nav_default --no-split
bench_step bench_rl2_bandit_nosplit 60 "$DEVICE" $IT $WU $TB rl2_bandit --no-split
if [ "$DRY" = 0 ]; then
  # the same cases on this machine's 16 CPU cores, while the budget lasts
  bench_step bench_cpu_maml_point_nav_default 60 cpu 5 1 15 maml_point_nav_default
  bench_step bench_cpu_rl2_bandit 60 cpu 5 1 15 rl2_bandit
fi

# ---- one JSON with every figure ------------------------------------------------------------------
"$PY" - "$WORK" "$OUT/gpu_check.json" "$T0" "$DRY" "$DEVICE" <<'EOF'
import json, re, sys, time
import xml.etree.ElementTree as ET
from pathlib import Path

work, dest, t0, dry, device = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1", sys.argv[5]
result = {"dry_run": dry, "device": device, "steps": {}, "tests": {}, "cases": {}, "syncs": {}}
rows = (work / "steps.tsv").read_text().splitlines() if (work / "steps.tsv").exists() else []
for row in rows:
    name, rc, a, b = row.split("\t")
    out = (work / f"{name}.out").read_text(errors="replace") if (work / f"{name}.out").exists() else ""
    s = {"status": "skipped" if rc == "skipped" else ("ok" if rc == "0" else "failed"),
         "rc": None if rc == "skipped" else int(rc), "wall_s": round(float(b) - float(a), 2)}
    if s["rc"] in (124, 137):
        s["status"] = "timed out"
    if s["status"] not in ("ok", "skipped"):
        s["output_tail"] = out[-1500:]
    result["steps"][name] = s
    for line in out.splitlines():
        if line.startswith("ENV_JSON "):
            result["env"] = json.loads(line[9:])
        elif line.startswith("IMPORT_JSON "):
            result["imports"] = json.loads(line[12:])
        elif line.startswith("{") and name.startswith("bench_"):
            try:
                r = json.loads(line)
            except ValueError:
                continue
            key = name[len("bench_"):]
            keep = ("device", "iterations", "sec_per_iteration", "sec_per_iteration_mean", "env_steps_per_iteration",
                    "env_steps_per_sec", "sampling_sec_per_iteration", "split_sec_per_iteration",
                    "minor_page_faults_per_iteration", "system_cpu_sec_per_iteration", "user_cpu_sec_per_iteration",
                    "threads", "target_sec_per_iteration", "target_env_steps_per_sec",
                    "projected_run_sec", "matmul_flops_per_iteration")
            result["cases"][key] = {k: r[k] for k in keep if k in r}
            result.setdefault("machine", r.get("machine"))
            if "syncs_per_iteration" in r:
                result["syncs"][key] = r["syncs_per_iteration"]
    if name == "install":
        m = re.search(r"already there: (\d+), to install: (\d+)", out)
        if m:
            s["wheels_already_there"], s["wheels_installed"] = int(m[1]), int(m[2])
    xml = work / f"{name}.xml"
    if xml.exists():
        try:
            root = ET.parse(xml).getroot()
            suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
            n = {k: sum(int(x.get(k, 0)) for x in suites) for k in ("tests", "failures", "errors", "skipped")}
            failed = [f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")
                      if c.find("failure") is not None or c.find("error") is not None]
            result["tests"][name] = {"passed": n["tests"] - n["failures"] - n["errors"] - n["skipped"],
                                     "failed": n["failures"], "errors": n["errors"], "skipped": n["skipped"],
                                     "failed_tests": failed[:20]}
        except ET.ParseError as e:
            result["tests"][name] = {"error": f"junit xml unreadable: {e}"}
result["ok"] = all(s["status"] in ("ok", "skipped") for s in result["steps"].values())
result["wall_s"] = round(time.time() - t0, 1)
dest.write_text(json.dumps(result, indent=1) + "\n")
print(f"gpu_check: wrote {dest} (ok={result['ok']}, {result['wall_s']} s)")
EOF
rc=$?
echo "gpu_check: done in $(($(date +%s) - T0)) s" | tee -a "$LOG"
rm -rf "$WORK"
exit $rc
