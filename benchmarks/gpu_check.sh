#!/usr/bin/env bash
# The GPU check, one command (make gpu-check), about 10 minutes on one H100/H200:
#   1. the CUDA tests (pytest -m gpu);
#   2. one paper-profile fit per method on a stand-in MVTec AD category, fp32 and
#      bf16: images/s, peak memory, metrics side by side (benchmarks/speed/gpu_check.py);
#   3. our RD beside anomalib's on CUDA (benchmarks/speed/vs_anomalib.py), when a
#      Python with anomalib is there ($PEERS_PYTHON, default .venv-peers/bin/python);
#      skipped with one line otherwise.
# Tables go to $OUT (default runs/gpu_check/<date>): gpu_tests.txt, fits.csv,
# precision.csv, vs_anomalib_cuda.csv, and the log of each step.
# Offline: nothing is downloaded; the paper's ImageNet teachers are used where the
# torch hub cache has them, else the same networks randomly initialised (each row
# says which). Usage: bash benchmarks/gpu_check.sh [--dry-run]
#   --dry-run: the same steps on the CPU at toy size (what the test suite runs).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
PEERS=${PEERS_PYTHON:-.venv-peers/bin/python}
OUT=${OUT:-runs/gpu_check/$(date -u +%Y%m%dT%H%M%SZ)}
export FUADNB_OFFLINE=1 HF_HUB_OFFLINE=1
mkdir -p "$OUT"
status=0
if [ "${1:-}" = "--dry-run" ]; then
  DEVICE=cpu; TESTS=(--collect-only -q); FIT=(--tiny --steps 2 --methods rd patchcore)
  PEER=(--backbones resnet18 --sizes 64 --images 4 --batch-size 2 --epochs 1 --repeats 1)
else
  DEVICE=cuda; TESTS=(-q); FIT=(--steps 100)
  PEER=(--backbones wide_resnet50_2 --sizes 256 --images 200 --epochs 3 --repeats 1)
  "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" || {
    echo "gpu_check: no CUDA device visible to $PY; use --dry-run on a CPU" >&2; exit 2; }
fi
step() {   # step NAME CMD...: run, log to $OUT/NAME.log, remember a failure
  echo "== $1: ${*:2}"
  local t0=$SECONDS
  "${@:2}" 2>&1 | tee "$OUT/$1.log"
  local rc=${PIPESTATUS[0]}
  echo "== $1: exit $rc in $((SECONDS - t0)) s"
  [ "$rc" = 0 ] || status=1
}
step gpu_tests "$PY" -m pytest -m gpu -p no:cacheprovider "${TESTS[@]}"
cp "$OUT/gpu_tests.log" "$OUT/gpu_tests.txt"
step fits "$PY" benchmarks/speed/gpu_check.py --device "$DEVICE" --out "$OUT" "${FIT[@]}"
if "$PEERS" -c "import anomalib" 2>/dev/null; then
  step vs_anomalib "$PEERS" benchmarks/speed/vs_anomalib.py --device "$DEVICE" \
    "${PEER[@]}" --csv "$OUT/vs_anomalib_$DEVICE.csv"
else
  echo "== vs_anomalib: skipped, no anomalib in $PEERS (make .venv-peers/.installed, or set PEERS_PYTHON)" | tee "$OUT/vs_anomalib.log"
fi
echo "gpu_check: tables and logs in $OUT (exit $status)"
exit $status
