#!/usr/bin/env bash
# UBM throughput on a GPU for the paper's architecture (R=5, F=160, M=10, 64x64):
# bench_ubm in float32 and mixed_bfloat16, without and with XLA, at batches 16 and 64;
# each run times training and likelihood maps and prints achieved FLOP/s and the
# fraction of the GPU's dense peak (peak_gflops, null for GPUs not in the table).
#
#   PYTHON=.venv/bin/python bash experiments/gpu_bench_ubm.sh [OUT_FILE]
#
# Appends one JSON line per run to OUT_FILE (default gpu_bench_ubm.jsonl); a failed run
# appends {"failed": ...} and the others go on. Variables: STEPS (10 timed steps),
# WARMUP (2), TIMEOUT (55 s per run, so 8 runs
# stay under 8 minutes on an H200 even when one hangs).
# Install first with `make install GPU=1`. See BENCHMARKS.md ("UBM speed").
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
OUT="${1:-gpu_bench_ubm.jsonl}"
STEPS="${STEPS:-10}"
WARMUP="${WARMUP:-2}"
TIMEOUT="${TIMEOUT:-55}"
export TF_CPP_MIN_LOG_LEVEL=2

"$PYTHON" -c "import sys, tensorflow as tf; sys.exit(0 if tf.config.list_physical_devices('GPU') else 1)" || {
  echo "gpu_bench_ubm: TensorFlow sees no GPU; install with 'make install GPU=1' on a machine with an NVIDIA driver." >&2
  exit 1
}
mkdir -p "$(dirname "$OUT")"
status=0
for batch in 16 64; do
  for precision in float32 mixed_bfloat16; do
    for xla in false true; do
      line=$(timeout "$TIMEOUT" "$PYTHON" -m experiments.bench_ubm --config=paper \
        --config.ubm.batch_size="$batch" --config.ubm.image_size=64 \
        --config.ubm.mixed_precision="$precision" --config.ubm.xla="$xla" \
        --steps="$STEPS" --warmup="$WARMUP" 2>/dev/null | grep '^{' | tail -1)
      if [ -n "$line" ]; then
        echo "$line" >> "$OUT"
        echo "batch=$batch $precision $xla: $line" | cut -c1-300
      else
        echo "{\"failed\": \"batch=$batch $precision $xla\"}" >> "$OUT"
        echo "gpu_bench_ubm: batch=$batch $precision $xla printed no JSON (timeout ${TIMEOUT}s?)" >&2
        status=1
      fi
    done
  done
done
echo "gpu_bench_ubm: results in $OUT"
exit "$status"
