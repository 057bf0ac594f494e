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
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

die() {
  echo "reproduce: $*" >&2
  exit 2
}
log() { echo "[reproduce $(date +%H:%M:%S)] $*" >&2; }

[ -f "experiments/configs/$CONFIG.py" ] && [ "$CONFIG" != base ] && [ "$CONFIG" != __init__ ] \
  || die "unknown CONFIG='$CONFIG': use CONFIG=smoke or CONFIG=paper (experiments/configs/)."
case "$COMPRESSION" in raw | c23 | c40) ;; *) die "COMPRESSION must be raw, c23 or c40, got '$COMPRESSION'." ;; esac

if [ -n "$FFPP_ROOT" ]; then
  [ -d "$FFPP_ROOT" ] || die "FFPP_ROOT='$FFPP_ROOT' is not a folder: point it at the FaceForensics++ download."
  [ -n "$SPLITS_DIR" ] || die "SPLITS_DIR is required with FFPP_ROOT: the folder with the official \
train.json, val.json and test.json (dataset/splits in the FaceForensics repository). Splits are never invented."
  [ -d "$SPLITS_DIR" ] || die "SPLITS_DIR='$SPLITS_DIR' is not a folder."
fi

mkdir -p "$WORKDIR"
START=$(date +%s)
log "config=$CONFIG compression=$COMPRESSION workdir=$WORKDIR"
# Every binary reads the configuration and records its own command line.
COMMON=(--config="$CONFIG" --workdir="$WORKDIR")

# 0-1. The data and its face crops (resume per video): FF++, or a generated miniature
# in its layout (make_synthetic_ffpp keeps a complete one as it is).
if [ -z "$FFPP_ROOT" ]; then
  [ -z "$SPLITS_DIR" ] || log "SPLITS_DIR is ignored without FFPP_ROOT (the generated dataset has its own)."
  [ "$COMPRESSION" = raw ] || log "COMPRESSION is ignored without FFPP_ROOT (the generated dataset is raw)."
  log "stage 0/6: the generated FF++-layout dataset"
  "$PYTHON" -m experiments.make_synthetic_ffpp "${COMMON[@]}"
  DATASET=(--dataset=generated)
else
  DATASET=(--dataset=ffpp --dataset_root="$FFPP_ROOT" --splits_dir="$SPLITS_DIR" --compression="$COMPRESSION")
fi
log "stage 1/6: face crops"
"$PYTHON" -m experiments.prepare_faces "${COMMON[@]}" --workers="$WORKERS" "${DATASET[@]}" \
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
"$PYTHON" -m experiments.train_ubm "${COMMON[@]}"

# 3. Likelihood maps of every crop (skips finished videos).
log "stage 3/6: likelihood maps"
"$PYTHON" -m experiments.extract_likelihoods "${COMMON[@]}"

# 4-5. The detector, Table 1 (known attacks) and Table 2 (leave-one-out), for every
# method found in the maps; finished methods are skipped.
for protocol in known loo; do
  log "stage $([ $protocol = known ] && echo 4 || echo 5)/6: detection, protocol $protocol"
  "$PYTHON" -m experiments.run_detection "${COMMON[@]}" --protocol="$protocol"
done

# 6. Tables and figures from the saved results.
log "stage 6/6: tables and figures"
"$PYTHON" -m experiments.make_tables "${COMMON[@]}"
"$PYTHON" -m experiments.make_figures "${COMMON[@]}"

log "done in $(($(date +%s) - START)) s: $WORKDIR/results/"
cat "$WORKDIR/results/table1.md" "$WORKDIR/results/table2.md"
