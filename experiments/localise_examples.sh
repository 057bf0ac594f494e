#!/usr/bin/env bash
# Localisation on real FF++ frames: a UBM and a background model trained on real
# talking-head videos (no FF++ data), then the FF++ example frames with their masks.
#
#   PYTHON=.venv/bin/python bash experiments/localise_examples.sh VIDEOS_DIR IMAGES_DIR [WORKDIR]
#
# VIDEOS_DIR: real face videos (*.mp4, ...): the last two train nothing (val), the rest
# train both models (smoke configuration). IMAGES_DIR: NAME.png frames with optional
# NAME_mask.png masks (localise_images). Writes WORKDIR/results/images/images.{csv,md}
# and fig_images.png. Every stage resumes; run it again to continue.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
VIDEOS="${1:?usage: localise_examples.sh VIDEOS_DIR IMAGES_DIR [WORKDIR]}"
IMAGES="${2:?usage: localise_examples.sh VIDEOS_DIR IMAGES_DIR [WORKDIR]}"
WORKDIR="${3:-workdir/examples}"
FRAMES="${FRAMES:-64}"  # frames per video for the models' training crops
[ -d "$VIDEOS" ] || { echo "localise_examples: $VIDEOS is not a folder of videos" >&2; exit 2; }
[ -d "$IMAGES" ] || { echo "localise_examples: $IMAGES is not a folder of images" >&2; exit 2; }

# The videos in the generic folder layout: <split>/real/ (links, nothing copied).
DATA="$WORKDIR/videos"
if [ ! -d "$DATA" ]; then
  mapfile -t videos < <(find "$VIDEOS" -maxdepth 1 -type f \( -name '*.mp4' -o -name '*.avi' -o -name '*.mkv' -o -name '*.mov' \) | sort)
  [ "${#videos[@]}" -ge 3 ] || { echo "localise_examples: need at least 3 videos in $VIDEOS" >&2; exit 2; }
  mkdir -p "$DATA.tmp/train/real" "$DATA.tmp/val/real"
  last=$((${#videos[@]} - 2))
  for i in "${!videos[@]}"; do
    split=train
    [ "$i" -lt "$last" ] || split=val
    ln -s "$(cd "$(dirname "${videos[$i]}")" && pwd)/$(basename "${videos[$i]}")" "$DATA.tmp/$split/real/"
  done
  mv "$DATA.tmp" "$DATA"
fi

COMMON=(--config=smoke --workdir="$WORKDIR")
# Exit 3: some folders (fake/) are absent by design; the real videos are cropped.
"$PYTHON" -m experiments.prepare_faces "${COMMON[@]}" --dataset=folder --dataset_root="$DATA" \
  --config.faces.frames_per_video="$FRAMES" || [ $? -eq 3 ]
"$PYTHON" -m experiments.train_ubm "${COMMON[@]}"
"$PYTHON" -m experiments.train_ubm "${COMMON[@]}" --background
"$PYTHON" -m experiments.localise_images "${COMMON[@]}" --images="$IMAGES"
cat "$WORKDIR/results/images/images.md"
