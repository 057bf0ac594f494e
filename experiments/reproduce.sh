#!/usr/bin/env bash
# The whole pipeline of Khodabakhsh & Busch (BIOSIG 2020), stage after stage.
#
# Called by `make reproduce` with these environment variables:
#   DATASET      generated (default without FFPP_ROOT: a miniature FF++-layout dataset made
#                into WORKDIR/synthetic_ffpp), ffpp (default with FFPP_ROOT), crops,
#                folder, dfdc or celebdf (see prepare_faces; they need DATASET_ROOT)
#   DATASET_ROOT the dataset's folder (or CSV) for prepare_faces --dataset_root
#   FFPP_ROOT    FaceForensics++ root as the download script wrote it (DATASET=ffpp)
#   SPLITS_DIR   folder with the official train.json/val.json/test.json (required with
#                DATASET=ffpp)
#   COMPRESSION  raw (the paper's), c23 or c40 (generated and ffpp)
#   CONFIG       smoke, cpu or paper (experiments/configs/)
#   OVERRIDES    any config fields by dotted name, e.g. '--config.ubm.max_steps=50'
#   WORKDIR      where every stage writes its folder
#   PYTHON       the interpreter of the project's environment
# and, empty meaning the config's value, named shortcuts for config overrides (checked by
# the binaries, which refuse a bad value before anything is written):
#   PRECISION    float32, mixed_bfloat16 or mixed_float16: ubm, background, likelihoods
#                .mixed_precision
#   MATMUL_DTYPE float32 or bfloat16 (only the convolutions, the rest float32): the same
#                .matmul_dtype
#   XLA          1 or 0: compile the UBM train step with XLA (ubm.xla, background.xla)
#   UBM_BATCH_SIZE      global UBM batch, split over the replicas (ubm.batch_size,
#                       background.batch_size; the learning rate scales linearly with it)
#   EXTRACT_BATCH_SIZE  crops per forward pass of extract_likelihoods (likelihoods.batch_size)
#   FRAMES       frames per video, evenly spaced; 0 = every frame (faces.frames_per_video)
#   FACE_FINDER  fast or exact (dlib on every full-resolution frame): faces.face_finder
# and the device flags of train_ubm and extract_likelihoods (not configuration):
#   STRATEGY     default, mirrored (every local GPU) or multiworker (TF_CONFIG): train_ubm
#   ALLOW_CPU    1: run a full-size UBM even where TensorFlow sees no GPU
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
DATASET_ROOT="${DATASET_ROOT:-}"
DATASET="${DATASET:-$([ -n "$FFPP_ROOT" ] && echo ffpp || echo generated)}"
OVERRIDES="${OVERRIDES:-}"
WORKERS="${WORKERS:-$(nproc 2>/dev/null || echo 2)}"
STRATEGY="${STRATEGY:-}"
PRECISION="${PRECISION:-}"
MATMUL_DTYPE="${MATMUL_DTYPE:-}"
XLA="${XLA:-}"
UBM_BATCH_SIZE="${UBM_BATCH_SIZE:-}"
EXTRACT_BATCH_SIZE="${EXTRACT_BATCH_SIZE:-}"
ALLOW_CPU="${ALLOW_CPU:-}"
FRAMES="${FRAMES:-}"
FACE_FINDER="${FACE_FINDER:-}"
# TF_CPP_MIN_LOG_LEVEL: the binaries mute TensorFlow's C++ start-up noise themselves
# (experiments/pipeline/devices.py) unless it is set here.

die() {
  echo "reproduce: $*" >&2
  exit 2
}
log() { echo "[reproduce $(date +%H:%M:%S)] $*" >&2; }

[ -f "experiments/configs/$CONFIG.py" ] && [ "$CONFIG" != base ] && [ "$CONFIG" != __init__ ] \
  && [ "$CONFIG" != overrides ] \
  || die "unknown CONFIG='$CONFIG': use CONFIG=smoke, CONFIG=cpu or CONFIG=paper (experiments/configs/)."
case "$COMPRESSION" in raw | c23 | c40) ;; *) die "COMPRESSION must be raw, c23 or c40, got '$COMPRESSION'." ;; esac
case "$DATASET" in generated | ffpp | crops | folder | dfdc | celebdf) ;;
  *) die "DATASET must be generated, ffpp, crops, folder, dfdc or celebdf, got '$DATASET'." ;;
esac
# The two device flags are no configuration fields: checked here, before any stage.
case "$STRATEGY" in "" | default | mirrored | multiworker) ;;
  *) die "STRATEGY must be default, mirrored or multiworker (or empty for default), got '$STRATEGY'." ;;
esac
case "$ALLOW_CPU" in "" | 0 | 1) ;; *) die "ALLOW_CPU must be 1 or 0, got '$ALLOW_CPU'." ;; esac

# The configuration overrides, the same for every stage (each binary checks them before
# writing anything and the first records the resolved configuration in
# WORKDIR/config.json); then each stage's device flags.
CONFIG_OVERRIDES=()
for section in ubm background likelihoods; do
  [ -z "$PRECISION" ] || CONFIG_OVERRIDES+=(--config.$section.mixed_precision="$PRECISION")
  [ -z "$MATMUL_DTYPE" ] || CONFIG_OVERRIDES+=(--config.$section.matmul_dtype="$MATMUL_DTYPE")
done
for section in ubm background; do
  [ -z "$XLA" ] || CONFIG_OVERRIDES+=(--config.$section.xla="$XLA")
  [ -z "$UBM_BATCH_SIZE" ] || CONFIG_OVERRIDES+=(--config.$section.batch_size="$UBM_BATCH_SIZE")
done
[ -z "$EXTRACT_BATCH_SIZE" ] || CONFIG_OVERRIDES+=(--config.likelihoods.batch_size="$EXTRACT_BATCH_SIZE")
[ -z "$FRAMES" ] || CONFIG_OVERRIDES+=(--config.faces.frames_per_video="$FRAMES")
[ -z "$FACE_FINDER" ] || CONFIG_OVERRIDES+=(--config.faces.face_finder="$FACE_FINDER")
# OVERRIDES: whitespace-separated --config.<field>=value arguments.
read -r -a USER_OVERRIDES <<< "$OVERRIDES"
CONFIG_OVERRIDES+=(${USER_OVERRIDES[@]+"${USER_OVERRIDES[@]}"})
UBM_FLAGS=()
EXTRACT_FLAGS=()
[ -z "$STRATEGY" ] || UBM_FLAGS+=(--strategy="$STRATEGY")
[ "$ALLOW_CPU" != 1 ] || { UBM_FLAGS+=(--allow_cpu); EXTRACT_FLAGS+=(--allow_cpu); }

[ -z "${DETECTION:-}" ] || die "DETECTION is now FACE_FINDER (how faces are found: fast or exact)."
[ -n "$FFPP_ROOT" ] && [ "$DATASET" != ffpp ] && die "FFPP_ROOT is for DATASET=ffpp: use DATASET_ROOT."
if [ "$DATASET" = ffpp ]; then
  FFPP_ROOT="${FFPP_ROOT:-$DATASET_ROOT}"
  [ -n "$FFPP_ROOT" ] || die "DATASET=ffpp needs FFPP_ROOT: the FaceForensics++ download."
  [ -d "$FFPP_ROOT" ] || die "FFPP_ROOT='$FFPP_ROOT' is not a folder: point it at the FaceForensics++ download."
  [ -n "$SPLITS_DIR" ] || die "SPLITS_DIR is required with FFPP_ROOT: the folder with the official \
train.json, val.json and test.json (dataset/splits in the FaceForensics repository). Splits are never invented."
  [ -d "$SPLITS_DIR" ] || die "SPLITS_DIR='$SPLITS_DIR' is not a folder."
elif [ "$DATASET" != generated ]; then
  [ -n "$DATASET_ROOT" ] || die "DATASET=$DATASET needs DATASET_ROOT: the dataset's folder (or CSV)."
  [ -e "$DATASET_ROOT" ] || die "DATASET_ROOT='$DATASET_ROOT' does not exist."
fi

START=$(date +%s)
log "config=$CONFIG dataset=$DATASET compression=$COMPRESSION workdir=$WORKDIR" \
  "overrides: ${CONFIG_OVERRIDES[*]:-none}; ubm: ${UBM_FLAGS[*]:-}; likelihoods: ${EXTRACT_FLAGS[*]:-}"
# Every binary reads the configuration (WORKDIR/config.json once the first stage has
# written it) and records its own command line.
COMMON=(--config="$CONFIG" --workdir="$WORKDIR" ${CONFIG_OVERRIDES[@]+"${CONFIG_OVERRIDES[@]}"})

# 0-1. The data and its face crops (resume per video): FF++, another dataset, or a
# generated miniature in FF++'s layout (make_synthetic_ffpp keeps a complete one as it is).
case "$DATASET" in
  generated)
    [ -z "$SPLITS_DIR" ] || log "SPLITS_DIR is ignored without FFPP_ROOT (the generated dataset has its own)."
    [ "$COMPRESSION" = raw ] || log "COMPRESSION=$COMPRESSION: the generated dataset's stand-in for it (every raw frame through JPEG, stored losslessly; see data_prep/datasets/generated.py)."
    log "stage 0/6: the generated FF++-layout dataset"
    "$PYTHON" -m experiments.make_synthetic_ffpp "${COMMON[@]}"
    FACES_SOURCE=(--dataset=generated --config.faces.compression="$COMPRESSION")
    ;;
  ffpp)
    FACES_SOURCE=(--dataset=ffpp --dataset_root="$FFPP_ROOT" --splits_dir="$SPLITS_DIR"
      --config.faces.compression="$COMPRESSION")
    ;;
  *)
    FACES_SOURCE=(--dataset="$DATASET" --dataset_root="$DATASET_ROOT")
    [ -z "$SPLITS_DIR" ] || FACES_SOURCE+=(--splits_dir="$SPLITS_DIR")
    ;;
esac
log "stage 1/6: face crops"
"$PYTHON" -m experiments.prepare_faces "${COMMON[@]}" --workers="$WORKERS" "${FACES_SOURCE[@]}" \
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
if [ "$DATASET" = generated ]; then
  log "cross-dataset: evaluations of $WORKDIR/model, then results/cross.*"
  OTHER="$WORKDIR/evaluation_data"
  if [ ! -d "$OTHER/folder_seed1" ]; then
    "$PYTHON" -m experiments.make_synthetic_ffpp "${COMMON[@]}" --out="$OTHER/ffpp_seed1.tmp" \
      --config.synthetic.seed=1 --config.synthetic.identities=6 --config.synthetic.frames=8 \
      --config.synthetic.compressions=raw
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

# Detect: the exported model on a few test-split videos (WORKDIR/detect/report.html);
# `python -m experiments.detect` runs it on your own. The generated dataset: the two
# originals of the first test pair and every method's fake of that pair; another
# dataset (not FF++): up to 4 test videos the face stage cropped, real and fake.
DETECT_INPUTS=()
if [ "$DATASET" = generated ]; then
  VIDEOS="$WORKDIR/synthetic_ffpp"
  # test.json is [["target", "source"], ...]: the first pair's two ids.
  read -r TARGET PAIRED _ < <(tr -d ' \n[]"' < "$VIDEOS/splits/test.json" | tr ',' ' '; echo)
  DETECT_INPUTS=(
    --input="$VIDEOS/original_sequences/youtube/raw/videos/$TARGET.*"
    --input="$VIDEOS/original_sequences/youtube/raw/videos/$PAIRED.*"
    --input="$VIDEOS/manipulated_sequences/*/raw/videos/${TARGET}_${PAIRED}.*"
  )
elif [ "$DATASET" != ffpp ]; then
  while IFS= read -r path; do
    DETECT_INPUTS+=(--input="$path")
  done < <("$PYTHON" -c 'import json, sys
from experiments.pipeline.detect_inputs import sample_test_videos
print("\n".join(sample_test_videos(json.load(open(sys.argv[1])), 4)))' "$WORKDIR/faces/manifest.json")
  [ ${#DETECT_INPUTS[@]} -gt 0 ] || log "detect: no test video with faces in $WORKDIR/faces/manifest.json"
fi
if [ ${#DETECT_INPUTS[@]} -gt 0 ]; then
  log "detect: test videos of the $DATASET dataset with $WORKDIR/model"
  "$PYTHON" -m experiments.detect --model="$WORKDIR/model" --out="$WORKDIR/detect" \
    --frames_per_video=8 "${DETECT_INPUTS[@]}" || detect_status=$?
  case "${detect_status:-0}" in
    0) ;;
    3) log "warning: some detect inputs failed; see $WORKDIR/detect/report.json" ;;
    *) exit "$detect_status" ;;
  esac
  log "detect report: $WORKDIR/detect/report.html (verdicts, score plots, heatmaps)"
fi
