#!/usr/bin/env bash
# The pipeline on a GPU in a few minutes: a paper-sized UBM (R=5, F=160, M=10) trained
# for a few hundred steps with MirroredStrategy and mixed precision on a small
# generated dataset, then every later stage; stage times and GPU use are recorded.
#
#   PYTHON=.venv/bin/python bash experiments/gpu_check.sh [OUT_DIR]
#
# Variables: STEPS (300), PRECISION (mixed_bfloat16), UBM_BATCH_SIZE (16: the paper's
# global batch), EXTRACT_BATCH_SIZE (128). Writes OUT_DIR/stages.tsv (stage, seconds,
# exit status), OUT_DIR/gpu.csv (nvidia-smi samples each second: utilisation, memory),
# OUT_DIR/devices.txt and every stage's log; the work directory is OUT_DIR/workdir.
# Install first with `make install GPU=1`. See BENCHMARKS.md for the figures.
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
OUT="${1:-gpu_check}"
STEPS="${STEPS:-300}"
PRECISION="${PRECISION:-mixed_bfloat16}"
UBM_BATCH_SIZE="${UBM_BATCH_SIZE:-16}"
EXTRACT_BATCH_SIZE="${EXTRACT_BATCH_SIZE:-128}"
WORKDIR="$OUT/workdir"
mkdir -p "$OUT"

"$PYTHON" -c "import tensorflow as tf, sys
gpus = tf.config.list_physical_devices('GPU')
print('tensorflow', tf.__version__, 'gpus', gpus)
sys.exit(0 if gpus else 1)" > "$OUT/devices.txt" 2>&1 || {
  cat "$OUT/devices.txt" >&2
  echo "gpu_check: TensorFlow sees no GPU; install with 'make install GPU=1' on a machine with an NVIDIA driver." >&2
  exit 2
}
command -v nvidia-smi >/dev/null && nvidia-smi -L >> "$OUT/devices.txt"

if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used,power.draw \
    --format=csv -l 1 > "$OUT/gpu.csv" 2>/dev/null &
  SMI=$!
  trap 'kill $SMI 2>/dev/null' EXIT
fi

printf 'stage\tseconds\texit_status\n' > "$OUT/stages.tsv"
stage() {
  local name=$1
  shift
  local start=$SECONDS
  "$PYTHON" -m "experiments.$name" "$@" > "$OUT/$name.log" 2>&1
  local status=$?
  printf '%s\t%s\t%s\n' "$name${TAG:+_$TAG}" "$((SECONDS - start))" "$status" >> "$OUT/stages.tsv"
  echo "[gpu_check] $name${TAG:+ $TAG}: $((SECONDS - start)) s, exit $status" >&2
  return $status
}

# The paper's UBM on the smoke run's data and detector: one configuration (a work
# directory never mixes two), its smoke-sized sections set by dotted overrides.
PAPER=(--config=paper --workdir="$WORKDIR"
  --config.synthetic.identities=24 --config.synthetic.frames=16
  --config.faces.frames_per_video=0
  --config.ubm.mixed_precision="$PRECISION" --config.ubm.batch_size="$UBM_BATCH_SIZE"
  --config.ubm.max_steps="$STEPS"
  --config.likelihoods.mixed_precision="$PRECISION"
  --config.likelihoods.batch_size="$EXTRACT_BATCH_SIZE"
  --config.detector.epochs=10 --config.detector.bootstrap_samples=200)
stage make_synthetic_ffpp "${PAPER[@]}" || exit 1
stage prepare_faces "${PAPER[@]}" --dataset=generated --workers="$(nproc)"
case $? in 0 | 3) ;; *) exit 1 ;; esac
stage train_ubm "${PAPER[@]}" --strategy=mirrored || exit 1
stage extract_likelihoods "${PAPER[@]}" || exit 1
for protocol in known loo; do
  TAG=$protocol stage run_detection "${PAPER[@]}" --protocol="$protocol" || exit 1
done
stage make_tables "${PAPER[@]}" || exit 1
cat "$OUT/stages.tsv"
