#!/usr/bin/env bash
# Download here the wheels that scripts/gpu_check.sh installs on the lent GPU machine (`make gpu-wheels`).
#
# That machine has its own Python 3.12 with a CUDA build of torch, no network, and takes at most
# 64 MiB of carried files, so this fetches, for CPython 3.12 on manylinux x86_64, dmrl's needs
# besides torch, one wheel each (--no-deps: the list below is the whole closure), into gpu_wheels/
# (git-ignored). gpu_check.sh installs only those whose distribution the image lacks.
#
# Versions: the ones installed in .venv (the set the test suite passes with here); where .venv lacks
# a package, the newest release pip finds.
#
# Left out on purpose (the GPU check does not import them, and the device image has most of them):
#   torch, numpy            the image's own builds (torch must never be replaced there)
#   tensorboard + protobuf, grpcio, markdown, werkzeug, tensorboard-data-server, absl-py
#                           the benchmark builds no logger; the picked tests train with tensorboard=False
#   matplotlib, imageio, imageio-ffmpeg (~30 MiB)
#                           plots and dmrl-eval video=true only
#   the sweep extra (ray, submitit, optuna)
# antlr4-python3-runtime 4.9.3 (hydra-core/omegaconf's parser) is published as an sdist only: it
# is pure Python, so it is built here into a py3-none-any wheel.
#
#   bash scripts/gpu_wheels.sh            # PYTHON=... picks the pip that downloads (default .venv's)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${GPU_WHEELS_DIR:-gpu_wheels}
MAX_MIB=${GPU_WHEELS_MAX_MIB:-60}
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3

# The runtime closure of dmrl without torch/numpy and without the parts named above, plus pytest.
PACKAGES=(
  hydra-core omegaconf PyYAML packaging           # config (antlr4-python3-runtime: built below)
  gymnasium cloudpickle Farama-Notifications typing_extensions
  mujoco mujoco-core mujoco-studio glfw PyOpenGL websockets   # mujoco 4 is split in three wheels
  tqdm
  pytest pluggy iniconfig Pygments pytest-timeout   # the dev extra's test runner
  hydra-joblib-launcher joblib                      # the dev extra (launcher=local)
)
ANTLR=antlr4-python3-runtime

pin() {  # NAME -> NAME==VERSION from .venv, or NAME
  "$PYTHON" - "$1" <<'EOF'
import sys
from importlib import metadata
name = sys.argv[1]
try:
    print(f"{name}=={metadata.version(name)}")
except metadata.PackageNotFoundError:
    print(name)
EOF
}

SPECS=()
for p in "${PACKAGES[@]}"; do SPECS+=("$(pin "$p")"); done
ANTLR_SPEC=$(pin "$ANTLR")

rm -rf "$DEST"
mkdir -p "$DEST"
# pip matches manylinux_2_N tags exactly, so name every glibc level the wheels use (mujoco-core is
# manylinux_2_27/2_28, PyYAML 2014/2_17, websockets 2_5/manylinux1); the image is Ubuntu 24.04-like
# (Python 3.12.3), whose glibc takes them all.
PLATFORMS=()
for t in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux_2_5_x86_64 manylinux1_x86_64; do PLATFORMS+=(--platform "$t"); done
echo "downloading ${#SPECS[@]} wheels for CPython 3.12 manylinux x86_64 into $DEST/"
"$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none "${PLATFORMS[@]}" \
  --platform any -d "$DEST" "${SPECS[@]}"
echo "building $ANTLR_SPEC (sdist only on PyPI; pure Python)"
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$DEST" "$ANTLR_SPEC"

# One wheel per distribution: two versions of one would stop the install there.
dups=$(ls "$DEST"/*.whl | xargs -n1 basename | cut -d- -f1 | tr 'A-Z-' 'a-z_' | sort | uniq -d)
[ -z "$dups" ] || { echo "error: more than one wheel of: $dups" >&2; exit 1; }
for w in "$DEST"/*.whl; do
  case "$(basename "$w")" in
    *-none-any.whl|*cp312*|*abi3*|*py3-none-manylinux*|*py2.py3-none-manylinux*) ;;
    *) echo "error: $(basename "$w") is not for CPython 3.12" >&2; exit 1 ;;
  esac
done

ls -l "$DEST"
bytes=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
echo "$DEST/: $(ls "$DEST"/*.whl | wc -l) wheels, $mib MiB"
if [ "$bytes" -gt $((MAX_MIB * 1048576)) ]; then
  echo "error: $DEST/ is over $MAX_MIB MiB (the device carries 64 MiB with the working tree)" >&2
  exit 1
fi
