#!/usr/bin/env bash
# The GPU device check of the GPU reference path (issue 17), as one command on a machine with an
# NVIDIA GPU (H100/H200), from the repository root:
#
#     bash bench/gpu_device_check.sh
#
# 1. tests/test_gpu.py on CUDA: every test compiled for the GPU (the CUDA-only tests included,
#    the golden corner-case programs through the fused, split, encode and decode kernels bit
#    for bit, the PTX/SASS check);
# 2. bench/bench_gpu.py: bit-exactness at scale, tuning, timings against cuBLAS fp16/fp32 and
#    the traffic floor; JSON in bench/results/gpu-<device>.json.
#
# Python: $PYTHON, else .venv/bin/python, else python3 (a GPU image with torch + triton + numpy
# + scipy + pytest + hypothesis; the repository need not be pip-installed). Logs and a copy of
# the JSON go to $OUT when it is set. Exit status: 0 only when both steps passed.
# About 5-8 minutes on an H200 (most of it Triton compiling on a cold cache).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
OUTDIR="${OUT:-bench/results}"
mkdir -p "$OUTDIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_device_check: no CUDA device visible to $PY (torch.cuda.is_available() is False)" >&2
    exit 2
fi
"$PY" -c "import torch, triton; print('device:', torch.cuda.get_device_name(0), '| torch', torch.__version__, '| triton', triton.__version__)"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv 2>/dev/null || true

t0=$(date +%s)
# -p no:cacheprovider: write nothing into the tree; xdist spreads Triton compiles over the cores
XDIST=""
if "$PY" -c "import xdist" 2>/dev/null; then XDIST="-n 8"; fi
"$PY" -m pytest -q -p no:cacheprovider $XDIST tests/test_gpu.py -rs 2>&1 | tee "$OUTDIR/gpu_tests.log"
tests_rc=${PIPESTATUS[0]}
echo "gpu_device_check: tests exit $tests_rc in $(( $(date +%s) - t0 )) s"

t1=$(date +%s)
"$PY" bench/bench_gpu.py --max-seconds "${BENCH_MAX_SECONDS:-420}" 2>&1 | tee "$OUTDIR/gpu_bench.log"
bench_rc=${PIPESTATUS[0]}
echo "gpu_device_check: bench exit $bench_rc in $(( $(date +%s) - t1 )) s"
if [ -n "${OUT:-}" ]; then cp bench/results/gpu-*.json "$OUT"/ 2>/dev/null || true; fi
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
