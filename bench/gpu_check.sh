#!/usr/bin/env bash
# Every GPU figure of issue #15 in one run, under 8 minutes on one H100, offline (random-init
# real-size timm models, the synthetic world; nothing is downloaded):
#   1. fused_eval     fused pass vs separate runs, compute-bound world: efficiency
#   2. decode_bound   fused vs separate on ImageNet-sized JPEGs (target >= 3x on a GPU), with
#                     the decode workers, then decoding in the pass's own process (decode_inproc)
#   3. decode_vitb    the same with ViT-B/16: efficiency where decode and transfers decide it
#   4. visualize      features per minute, batched vs one feature per run (target >= 8x), fp32
#                     and bf16 (each for both ways)
#   5. precision      fp32 vs tf32 vs bf16 throughput and agreement (bench/precision.py, if
#                     present; the CPU fallback compares fp32 and bf16 untrained)
#   6. paper_smoke    studies/paper.yaml end to end at a few hundred images
# Each step runs under its own time limit, so one slow step cannot eat the others' time; a
# summary and the total come at the end (exit 1 if any step failed or ran out of time).
# Usage: bench/gpu_check.sh [--device cuda|cuda:N|cpu]
#   --device cpu: the CPU fallback, tiny sizes, the same steps (the tests run it).
# The python is ${PYTHON:-.venv/bin/python}, run from the repository root.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
DEVICE=cuda
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) DEVICE=${2:?--device needs a value}; shift 2 ;;
    --device=*) DEVICE=${1#--device=}; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (expected --device cuda|cpu)" >&2; exit 2 ;;
  esac
done
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg

if [[ $DEVICE == cpu ]]; then
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # steadier on a shared machine, no thread fights
  WORKERS=0
  FUSED=(--images 24 --batch-size 12 --repeat 1)
  DECODE=(--images 20 --batch-size 10 --repeat 1)
  DECODE_VITB=(--model tiny --size 32  # ViT-B/16 takes minutes on a CPU: the step's plumbing
               --images 10 --batch-size 10 --repeat 1)
  DECODE_INPROC=(--images 20 --batch-size 10 --repeat 1)
  VISUALIZE=(--models quickstart --layers 0 --features 2 --steps 1 --batch 16 --repeats 1
             --precision fp32,bf16)
  PRECISION=(--precisions fp32,bf16 --epochs 0 --images 12 --batch-size 12 --repeat 1)
  PAPER=(--limit 2 --batch-size 2 --models mobilenet_v2)
  LIMITS=(120 120 120 120 120 120 180)
else
  cores=$(nproc)
  WORKERS=$(( cores > 9 ? 8 : (cores > 1 ? cores - 1 : 0) ))
  FUSED=(--repeat 2)
  DECODE=(--images 500 --batch-size 128 --repeat 2)
  DECODE_INPROC=(--images 500 --batch-size 128 --repeat 1)
  DECODE_VITB=(--model vit_base --images 500 --batch-size 64 --repeat 2)
  VISUALIZE=(--models vit_base --layers 0 1 2 3 4 5 --features 32 --steps 5 --batch 256
             --repeats 1 --precision fp32,bf16)
  PRECISION=(--precisions fp32,tf32,bf16 --epochs 3 --repeat 2)
  # the evaluation study at a few hundred images (its figure in BENCHMARKS.md); the visual
  # study's smoke (paper_visual) takes its own minutes: bench/paper_smoke.py --studies paper_visual
  PAPER=(--limit 300 --batch-size 64 --studies paper)
  # 480 s in all: the whole script stays under 8 minutes (about 6 on an H200, 2026-11-26)
  LIMITS=(50 45 50 75 85 40 135)
fi

SUMMARY=()
FAILED=0
STARTED=$SECONDS

# step NAME LIMIT_SECONDS COMMAND...: run COMMAND under its own time limit; record the outcome.
step() {
  local name=$1 limit=$2 began=$SECONDS status=0
  shift 2
  echo
  echo "== $name (limit ${limit} s): $*"
  timeout --kill-after=10 "$limit" "$@" || status=$?
  local took=$(( SECONDS - began ))
  if [[ $status -eq 0 ]]; then
    SUMMARY+=("$name: ok in ${took} s")
  elif [[ $status -eq 124 || $status -eq 137 ]]; then
    SUMMARY+=("$name: TIMED OUT after ${took} s (limit ${limit} s)"); FAILED=1
  else
    SUMMARY+=("$name: FAILED (exit $status) after ${took} s"); FAILED=1
  fi
  echo "== $name: ${SUMMARY[-1]#"$name: "}"
}

echo "gpu_check: device $DEVICE, $WORKERS decode workers, python $PYTHON"
step fused_eval "${LIMITS[0]}" "$PYTHON" bench/fused_eval.py --device "$DEVICE" \
  --workers "$WORKERS" "${FUSED[@]}"
step decode_bound "${LIMITS[1]}" "$PYTHON" bench/decode_bound.py --device "$DEVICE" \
  --workers "$WORKERS" "${DECODE[@]}"
step decode_inproc "${LIMITS[2]}" "$PYTHON" bench/decode_bound.py --device "$DEVICE" \
  --workers 0 "${DECODE_INPROC[@]}"
step decode_vitb "${LIMITS[3]}" "$PYTHON" bench/decode_bound.py --device "$DEVICE" \
  --workers "$WORKERS" "${DECODE_VITB[@]}"
step visualize "${LIMITS[4]}" "$PYTHON" bench/visualize.py --device "$DEVICE" "${VISUALIZE[@]}"
if [[ -f bench/precision.py ]]; then
  step precision "${LIMITS[5]}" "$PYTHON" bench/precision.py --device "$DEVICE" \
    --workers "$WORKERS" "${PRECISION[@]}"
else
  SUMMARY+=("precision: not run (bench/precision.py is not there yet)")
  echo; echo "== precision: not run (bench/precision.py is not there yet)"
fi
step paper_smoke "${LIMITS[6]}" "$PYTHON" bench/paper_smoke.py --device "$DEVICE" \
  --workers "$WORKERS" "${PAPER[@]}"

echo
echo "== gpu_check summary (device $DEVICE)"
printf '  %s\n' "${SUMMARY[@]}"
echo "gpu_check: total $(( SECONDS - STARTED )) s"
exit "$FAILED"
