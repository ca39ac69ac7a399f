#!/usr/bin/env bash
# gpu_check.sh: on a machine with an NVIDIA GPU and no network (it has nvcc,
# torch with CUDA, CuPy, Cython and scikit-build-core), build klkit in a
# fresh virtual environment that sees the system's packages, run the GPU
# tests, time the kernels (bench/gpu_check.py), then run the whole suite.
# A failed build stops it; any other step is time-boxed and the script goes
# on to print what it has (sized for about 5 minutes on 16 cores; at most
# 12.5 with every box used up).  The logs and the table are written under
# $OUT (or ./gpu_check_out).
#     bash bench/gpu_check.sh [--quick]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
status=0
step() {   # step NAME SECONDS COMMAND...: run, log to $out/NAME.log, keep going
    local name=$1 secs=$2
    shift 2
    echo "== $name"
    timeout "$secs" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$out/$name.log"
    echo "== $name: exit $rc"
    [ $rc -eq 0 ] || status=1
    return $rc
}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv \
    | tee "$out/gpu.txt"
python3 -m venv --system-site-packages /tmp/klkit-venv
# shellcheck disable=SC1091
. /tmp/klkit-venv/bin/activate
# the card's own architecture only: the build takes a third of the time
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d '. ')
step build 240 env KLKIT_CUDA=ON KLKIT_CUDA_ARCHS="${cap:-90}-real" CMAKE_BUILD_PARALLEL_LEVEL=16 \
    python -m pip install --no-build-isolation --no-deps --no-index -v . || exit 1
(cd /tmp && python -c "import klkit; klkit.show_config()") | tee "$out/config.txt"
step cuda_tests 90 python -m pytest -q -x -p no:cacheprovider tests/test_gpu.py
step gpu_check 180 python bench/gpu_check.py "$@" --out "$out"
par=""
python -c "import xdist" 2>/dev/null && par="-n 8"
# shellcheck disable=SC2086
# (a test module whose optional dependency is missing there is reported, not fatal)
step all_tests 240 python -m pytest -q -p no:cacheprovider --continue-on-collection-errors \
    $par tests
exit $status
