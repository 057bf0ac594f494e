r"""Crops the faces of FaceForensics++ videos into 64x64 TFRecord shards.

Usage:
  python -m experiments.prepare_faces --ffpp_root=FFPP --splits_dir=SPLITS \
      --workdir=WORKDIR [--compression=raw|c23|c40] \
      [--methods=Deepfakes,Face2Face,FaceSwap,NeuralTextures] [--frames_per_video=N] \
      [--detection=fast|exact] [--workers=N] [--max_frames=N]

Writes `WORKDIR/faces/<split>/<source>/<video>.tfrecord` (one shard per video;
source = original or the method), `WORKDIR/faces/manifest.json` (per-video counts,
totals per split and method, settings) and `WORKDIR/faces/config.json`. Running the
same command again skips finished videos. The exit status is 3 when a video failed
or a requested folder or split file was missing (all other videos are processed).
Khodabakhsh & Busch (BIOSIG 2020), Sec. 4: dlib face crops as in FaceForensics++.
"""

from __future__ import annotations

import os

from absl import app, flags, logging

from data_prep.config import METHODS, FacesConfig
from data_prep.face_detection import DETECTION_MODES
from data_prep.face_extraction import prepare_faces
from data_prep.ffpp_layout import COMPRESSIONS
from experiments.pipeline import run_log

_DEFAULTS = FacesConfig()

FFPP_ROOT = flags.DEFINE_string(
    "ffpp_root", None, "FF++ root as the download script wrote it (original_sequences/, ...)."
)
SPLITS_DIR = flags.DEFINE_string(
    "splits_dir",
    None,
    "Folder with the official train.json, val.json, test.json (dataset/splits of the "
    "FaceForensics repository). Required: splits are never invented.",
)
WORKDIR = flags.DEFINE_string("workdir", None, "Work directory; crops go to WORKDIR/faces.")
COMPRESSION = flags.DEFINE_enum(
    "compression", _DEFAULTS.compression, COMPRESSIONS, "FF++ compression level."
)
METHODS_FLAG = flags.DEFINE_list(
    "methods", list(METHODS), "Manipulation methods to include; empty for originals only."
)
FRAMES_PER_VIDEO = flags.DEFINE_integer(
    "frames_per_video",
    _DEFAULTS.frames_per_video,
    "0 for every frame, N > 0 for N evenly spaced frames per video.",
    lower_bound=0,
)
DETECTION = flags.DEFINE_enum(
    "detection",
    _DEFAULTS.detection,
    DETECTION_MODES,
    "exact: dlib on every full-resolution frame (FF++ reference); fast: the same boxes "
    "from keyframes and interpolation.",
)
WORKERS = flags.DEFINE_integer(
    "workers", os.cpu_count() or 1, "Processes working on videos in parallel.", lower_bound=1
)
MAX_FRAMES = flags.DEFINE_integer(
    "max_frames", 0, "If > 0, use only the first N frames of each video.", lower_bound=0
)
flags.mark_flags_as_required(["ffpp_root", "workdir"])


# Distinct from absl's exit status 1 for usage errors, so scripts can tell "ran, with
# some videos failed or folders missing" from "did not run".
EXIT_SOME_FAILED = 3


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not SPLITS_DIR.value:
        raise app.UsageError(
            "--splits_dir is required: pass the folder with the official FF++ split files "
            "train.json, val.json and test.json (dataset/splits of the FaceForensics "
            "repository). Splits are never invented."
        )
    workdir = WORKDIR.value
    try:
        run_log.record_command(workdir)
        manifest = prepare_faces(
            ffpp_root=FFPP_ROOT.value,
            splits_dir=SPLITS_DIR.value,
            out_dir=os.path.join(workdir, "faces"),
            compression=COMPRESSION.value,
            methods=tuple(m for m in METHODS_FLAG.value if m),
            frames_per_video=FRAMES_PER_VIDEO.value,
            detection=DETECTION.value,
            workers=WORKERS.value,
            max_frames=MAX_FRAMES.value,
        )
    except PermissionError as err:
        raise app.UsageError(str(err)) from None
    except (ValueError, FileNotFoundError) as err:
        raise app.UsageError(str(err)) from None
    except OSError as err:
        raise app.UsageError(
            f"Cannot write to --workdir={workdir!r} ({err}): choose a writable folder."
        ) from None
    failed = manifest["failed_videos"]
    problems = manifest["problems"]
    if failed or problems:
        logging.error(
            "%d videos failed and %d problems were found (see %s): the other videos are done.",
            failed,
            len(problems),
            os.path.join(workdir, "faces", "manifest.json"),
        )
        return EXIT_SOME_FAILED
    return 0


if __name__ == "__main__":
    app.run(main)
