#!/usr/bin/env bash
# The whole pipeline of Khodabakhsh & Busch (BIOSIG 2020), stage after stage.
#
# Called by `make reproduce` with these environment variables:
#   FFPP_ROOT    FaceForensics++ root as the download script wrote it; empty = generate a
#                miniature FF++-layout dataset into WORKDIR/synthetic_ffpp (smoke run)
#   SPLITS_DIR   folder with the official train.json/val.json/test.json (required with
#                FFPP_ROOT)
#   COMPRESSION  raw (the paper's), c23 or c40
#   CONFIG       smoke or paper (experiments/configs/)
#   WORKDIR      where every stage writes its folder
#   PYTHON       the interpreter of the project's environment
# and, empty meaning the config's value:
#   STRATEGY     default, mirrored (every local GPU) or multiworker (TF_CONFIG): train_ubm
#   PRECISION    float32, mixed_bfloat16 or mixed_float16: train_ubm and extract_likelihoods
#   MATMUL_DTYPE float32 or bfloat16 (only the convolutions, the rest float32): the same
#   XLA          1 or 0: compile the UBM train step with XLA
#   UBM_BATCH_SIZE      global UBM batch, split over the replicas (the learning rate
#                       scales linearly with it, see train_ubm)
#   EXTRACT_BATCH_SIZE  crops per forward pass of extract_likelihoods
#   ALLOW_CPU    1: run a full-size UBM even where TensorFlow sees no GPU
#   DETECTION    fast or exact (the FF++ reference detector on every sample): prepare_faces
# Every stage skips work it has finished, so running this again after an interruption
# continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
CONFIG="${CONFIG:-smoke}"
COMPRESSION="${COMPRESSION:-raw}"
WORKDIR="${WORKDIR:-workdir/${CONFIG}}"
FFPP_ROOT="${FFPP_ROOT:-}"
SPLITS_DIR="${SPLITS_DIR:-}"
WORKERS="${WORKERS:-$(nproc 2>/dev/null || echo 2)}"
STRATEGY="${STRATEGY:-}"
PRECISION="${PRECISION:-}"
MATMUL_DTYPE="${MATMUL_DTYPE:-}"
XLA="${XLA:-}"
UBM_BATCH_SIZE="${UBM_BATCH_SIZE:-}"
EXTRACT_BATCH_SIZE="${EXTRACT_BATCH_SIZE:-}"
ALLOW_CPU="${ALLOW_CPU:-}"
DETECTION="${DETECTION:-}"
# TF_CPP_MIN_LOG_LEVEL: the binaries mute TensorFlow's C++ start-up noise themselves
# (experiments/pipeline/devices.py) unless it is set here.

die() {
  echo "reproduce: $*" >&2
  exit 2
}
log() { echo "[reproduce $(date +%H:%M:%S)] $*" >&2; }

[ -f "experiments/configs/$CONFIG.py" ] && [ "$CONFIG" != base ] && [ "$CONFIG" != __init__ ] \
  || die "unknown CONFIG='$CONFIG': use CONFIG=smoke or CONFIG=paper (experiments/configs/)."
case "$COMPRESSION" in raw | c23 | c40) ;; *) die "COMPRESSION must be raw, c23 or c40, got '$COMPRESSION'." ;; esac

case "$STRATEGY" in "" | default | mirrored | multiworker) ;;
  *) die "STRATEGY must be default, mirrored or multiworker (or empty for default), got '$STRATEGY'." ;;
esac
case "$PRECISION" in "" | float32 | mixed_bfloat16 | mixed_float16) ;;
  *) die "PRECISION must be float32, mixed_bfloat16 or mixed_float16 (or empty for the config's), got '$PRECISION'." ;;
esac
case "$MATMUL_DTYPE" in "" | float32 | bfloat16) ;;
  *) die "MATMUL_DTYPE must be float32 or bfloat16 (or empty for the config's), got '$MATMUL_DTYPE'." ;;
esac
case "$XLA" in "" | 0 | 1) ;; *) die "XLA must be 1 or 0 (or empty for the config's), got '$XLA'." ;; esac
case "$DETECTION" in "" | fast | exact) ;;
  *) die "DETECTION must be fast or exact (or empty for the config's), got '$DETECTION'." ;;
esac
case "$ALLOW_CPU" in "" | 0 | 1) ;; *) die "ALLOW_CPU must be 1 or 0, got '$ALLOW_CPU'." ;; esac
for name in UBM_BATCH_SIZE EXTRACT_BATCH_SIZE; do
  value="${!name}"
  [ -z "$value" ] || [[ "$value" =~ ^[1-9][0-9]*$ ]] \
    || die "$name must be a positive whole number (or empty for the config's), got '$value'."
done

# Each stage's device and size flags (only those set; the binaries record them in
# their config.json).
FACE_FLAGS=()
UBM_FLAGS=()
EXTRACT_FLAGS=()
[ -z "$DETECTION" ] || FACE_FLAGS+=(--detection="$DETECTION")
[ -z "$STRATEGY" ] || UBM_FLAGS+=(--strategy="$STRATEGY")
[ -z "$PRECISION" ] || { UBM_FLAGS+=(--mixed_precision="$PRECISION"); EXTRACT_FLAGS+=(--mixed_precision="$PRECISION"); }
[ -z "$MATMUL_DTYPE" ] || { UBM_FLAGS+=(--matmul_dtype="$MATMUL_DTYPE"); EXTRACT_FLAGS+=(--matmul_dtype="$MATMUL_DTYPE"); }
[ "$XLA" != 1 ] || UBM_FLAGS+=(--xla)
[ "$XLA" != 0 ] || UBM_FLAGS+=(--noxla)
[ -z "$UBM_BATCH_SIZE" ] || UBM_FLAGS+=(--batch_size="$UBM_BATCH_SIZE")
[ -z "$EXTRACT_BATCH_SIZE" ] || EXTRACT_FLAGS+=(--batch_size="$EXTRACT_BATCH_SIZE")
[ "$ALLOW_CPU" != 1 ] || { UBM_FLAGS+=(--allow_cpu); EXTRACT_FLAGS+=(--allow_cpu); }

if [ -n "$FFPP_ROOT" ]; then
  [ -d "$FFPP_ROOT" ] || die "FFPP_ROOT='$FFPP_ROOT' is not a folder: point it at the FaceForensics++ download."
  [ -n "$SPLITS_DIR" ] || die "SPLITS_DIR is required with FFPP_ROOT: the folder with the official \
train.json, val.json and test.json (dataset/splits in the FaceForensics repository). Splits are never invented."
  [ -d "$SPLITS_DIR" ] || die "SPLITS_DIR='$SPLITS_DIR' is not a folder."
fi

mkdir -p "$WORKDIR"
START=$(date +%s)
log "config=$CONFIG compression=$COMPRESSION workdir=$WORKDIR" \
  "ubm: ${UBM_FLAGS[*]:-config defaults}; likelihoods: ${EXTRACT_FLAGS[*]:-config defaults}"
# Every binary reads the configuration and records its own command line.
COMMON=(--config="$CONFIG" --workdir="$WORKDIR")

# 0-1. The data and its face crops (resume per video): FF++, or a generated miniature
# in its layout (make_synthetic_ffpp keeps a complete one as it is).
if [ -z "$FFPP_ROOT" ]; then
  [ -z "$SPLITS_DIR" ] || log "SPLITS_DIR is ignored without FFPP_ROOT (the generated dataset has its own)."
  [ "$COMPRESSION" = raw ] || log "COMPRESSION=$COMPRESSION: the generated dataset's stand-in for it (every raw frame through JPEG, stored losslessly; see data_prep/datasets/generated.py)."
  log "stage 0/6: the generated FF++-layout dataset"
  "$PYTHON" -m experiments.make_synthetic_ffpp "${COMMON[@]}"
  DATASET=(--dataset=generated --compression="$COMPRESSION")
else
  DATASET=(--dataset=ffpp --dataset_root="$FFPP_ROOT" --splits_dir="$SPLITS_DIR" --compression="$COMPRESSION")
fi
log "stage 1/6: face crops"
"$PYTHON" -m experiments.prepare_faces "${COMMON[@]}" --workers="$WORKERS" "${DATASET[@]}" \
  ${FACE_FLAGS[@]+"${FACE_FLAGS[@]}"} \
  || faces_status=$?
# 3: the stage ran, but some videos failed or folders were missing; go on with the rest
# (the tables mark a method without data as missing). Anything else stops here.
case "${faces_status:-0}" in
  0) ;;
  3) log "warning: some videos failed or folders were missing; see $WORKDIR/faces/manifest.json" ;;
  *) exit "$faces_status" ;;
esac

# 2. The UBM on pristine training crops (resumes from its last checkpoint).
log "stage 2/6: UBM (PixelCNN++) on pristine training faces"
"$PYTHON" -m experiments.train_ubm "${COMMON[@]}" ${UBM_FLAGS[@]+"${UBM_FLAGS[@]}"}

# 3. Likelihood maps of every crop (skips finished videos).
log "stage 3/6: likelihood maps"
"$PYTHON" -m experiments.extract_likelihoods "${COMMON[@]}" ${EXTRACT_FLAGS[@]+"${EXTRACT_FLAGS[@]}"}

# The background model (a PixelCNN++ of the pristine training crops with values replaced
# at random; smaller in the smoke config) and its maps of the val and test crops: the
# likelihood-ratio localisation score (Ren et al., NeurIPS 2019).
log "stage 3/6: background model and its val/test maps"
"$PYTHON" -m experiments.train_ubm "${COMMON[@]}" --background ${UBM_FLAGS[@]+"${UBM_FLAGS[@]}"}
"$PYTHON" -m experiments.extract_likelihoods "${COMMON[@]}" --background \
  ${EXTRACT_FLAGS[@]+"${EXTRACT_FLAGS[@]}"}

# 4-5. The detector, Table 1 (known attacks) and Table 2 (leave-one-out), for every
# method found in the maps, then one detector on real + every method (protocol all,
# detection/all/all/: the model exported below, not in the tables); finished methods
# are skipped.
for protocol in known loo all; do
  log "stage $([ $protocol = known ] && echo 4 || echo 5)/6: detection, protocol $protocol"
  "$PYTHON" -m experiments.run_detection "${COMMON[@]}" --protocol="$protocol"
done

# 6. Tables and figures from the saved results.
log "stage 6/6: tables and figures"
"$PYTHON" -m experiments.make_tables "${COMMON[@]}"
"$PYTHON" -m experiments.make_figures "${COMMON[@]}"
# Localisation: the maps against the manipulation masks (results/localisation.*, seconds).
"$PYTHON" -m experiments.score_localisation "${COMMON[@]}"

# The deployable model folder: the UBM's averaged weights, the protocol-all detector,
# face settings, threshold and manifest (refreshed on every run).
log "export: the model folder $WORKDIR/model"
"$PYTHON" -m experiments.export_model "${COMMON[@]}" --out="$WORKDIR/model" --protocol=all --overwrite

log "done in $(($(date +%s) - START)) s: $WORKDIR/results/"
cat "$WORKDIR/results/table1.md" "$WORKDIR/results/table2.md"

# Cross-dataset evaluation (smoke run): the exported model only scores (nothing trains
# or selects on these): the generated test split at raw, c23 and c40 (cross-compression:
# the model was trained on COMPRESSION; c23 and c40 are the generated JPEG stand-ins),
# and a second generated dataset with another seed (other identities and appearance; the
# generator has no manipulation-strength setting) and fewer people, arranged in the
# generic folder layout ROOT/real/*.avi, ROOT/fake/<method>/*.avi; then
# WORKDIR/results/cross.{csv,md,tex}.
if [ -z "$FFPP_ROOT" ]; then
  log "cross-dataset: evaluations of $WORKDIR/model, then results/cross.*"
  OTHER="$WORKDIR/evaluation_data"
  if [ ! -d "$OTHER/folder_seed1" ]; then
    "$PYTHON" -m experiments.make_synthetic_ffpp "${COMMON[@]}" --out="$OTHER/ffpp_seed1.tmp" \
      --seed=1 --identities=6 --frames=8 --compressions=raw
    rm -rf "$OTHER/folder_seed1.tmp"
    mkdir -p "$OTHER/folder_seed1.tmp/real"
    cp "$OTHER"/ffpp_seed1.tmp/original_sequences/youtube/raw/videos/* "$OTHER/folder_seed1.tmp/real/"
    for dir in "$OTHER"/ffpp_seed1.tmp/manipulated_sequences/*/; do
      method="$(basename "$dir")"
      mkdir -p "$OTHER/folder_seed1.tmp/fake/$method"
      cp "$dir"raw/videos/* "$OTHER/folder_seed1.tmp/fake/$method/"
    done
    mv "$OTHER/folder_seed1.tmp" "$OTHER/folder_seed1"
    rm -rf "$OTHER/ffpp_seed1.tmp"  # only the folder layout is kept
  fi
  # 200 resamples (not 1,000) keep the smoke intervals' bootstrap to seconds.
  EVAL=(--model="$WORKDIR/model" --workers="$WORKERS" --frames_per_video=4 --bootstrap_samples=200)
  # The three levels in one run: the model loads once.
  GENERATED="$WORKDIR/evaluation/generated_test"
  "$PYTHON" -m experiments.evaluate "${EVAL[@]}" --dataset=generated --compression=raw,c23,c40 \
    --root="$WORKDIR/synthetic_ffpp" --split=test --out="${GENERATED}_{compression}"
  "$PYTHON" -m experiments.evaluate "${EVAL[@]}" --dataset=folder \
    --root="$OTHER/folder_seed1" --out="$WORKDIR/evaluation/folder_seed1"
  "$PYTHON" -m experiments.make_cross_table --workdir="$WORKDIR" \
    --evaluations="${GENERATED}_raw,${GENERATED}_c23,${GENERATED}_c40,$WORKDIR/evaluation/folder_seed1"
  cat "$WORKDIR/results/cross.md"
fi

# Detect: the exported model on a few test-split videos of the generated dataset, the
# two originals of the first test pair and every method's fake of that pair
# (WORKDIR/detect/report.html); `python -m experiments.detect` runs it on your own.
if [ -z "$FFPP_ROOT" ]; then
  log "detect: test videos of the generated dataset with $WORKDIR/model"
  VIDEOS="$WORKDIR/synthetic_ffpp"
  # test.json is [["target", "source"], ...]: the first pair's two ids.
  read -r TARGET SOURCE _ < <(tr -d ' \n[]"' < "$VIDEOS/splits/test.json" | tr ',' ' '; echo)
  "$PYTHON" -m experiments.detect --model="$WORKDIR/model" --out="$WORKDIR/detect" \
    --frames_per_video=8 \
    --input="$VIDEOS/original_sequences/youtube/raw/videos/$TARGET.*" \
    --input="$VIDEOS/original_sequences/youtube/raw/videos/$SOURCE.*" \
    --input="$VIDEOS/manipulated_sequences/*/raw/videos/${TARGET}_${SOURCE}.*" \
    || detect_status=$?
  case "${detect_status:-0}" in
    0) ;;
    3) log "warning: some detect inputs failed; see $WORKDIR/detect/report.json" ;;
    *) exit "$detect_status" ;;
  esac
  log "detect report: $WORKDIR/detect/report.html (verdicts, score plots, heatmaps)"
fi
