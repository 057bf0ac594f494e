r"""Benchmarks fast against exact face cropping on real videos; prints one JSON line.

Usage (what `make bench` runs):
  python -m experiments.bench_faces --videos_dir=../shared/data/talking_heads \
      [--videos=d0.mp4,d13.mp4] [--max_frames=N] [--exact_max_frames=N] \
      [--config=smoke|paper] [--workdir=DIR]

The crop and fast-detector settings are the config's face settings; every frame is
read. `--workdir` is scratch space for the runs (a temporary folder, removed at the
end, by default).

Frames per second per core of both detectors from the stage's manifests (decoding,
detection, cropping and writing; process start-up excluded), the speed-up, and the
IoU between their crop boxes. Each video is run fast, exact and fast again, so that
load from other processes affects both alike. Khodabakhsh & Busch (BIOSIG 2020) crop faces with dlib
as FaceForensics++ does; `exact` is that reference.
"""

from __future__ import annotations

import glob
import json
import os

from absl import app, flags

from data_prep.face_benchmark import benchmark_faces
from experiments import cli
from experiments.configs import CONFIG_NAMES

VIDEOS_DIR = flags.DEFINE_string("videos_dir", None, "Folder of real videos (any format).")
VIDEOS = flags.DEFINE_list("videos", [], "File names in --videos_dir to use (default: all).")
MAX_FRAMES = flags.DEFINE_integer(
    "max_frames", 0, "If > 0, only the first N frames of each video.", lower_bound=0
)
EXACT_MAX_FRAMES = flags.DEFINE_integer(
    "exact_max_frames",
    0,
    "If > 0, the (slow) exact run uses only the first N frames of each video.",
    lower_bound=0,
)
CONFIG = flags.DEFINE_string(
    "config",
    "smoke",
    f"Configuration whose face settings are timed: one of {', '.join(CONFIG_NAMES)}.",
)
WORKDIR = flags.DEFINE_string(
    "workdir", None, "Scratch folder for the runs, kept (default: a temporary folder)."
)
flags.mark_flag_as_required("videos_dir")


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    config = cli.experiment_config(CONFIG)
    folder = VIDEOS_DIR.value
    if not os.path.isdir(folder):
        raise app.UsageError(f"--videos_dir={folder!r} is not a folder.")
    if VIDEOS.value:
        videos = [os.path.join(folder, name) for name in VIDEOS.value]
        missing = [v for v in videos if not os.path.isfile(v)]
        if missing:
            raise app.UsageError(f"Not found in --videos_dir: {', '.join(missing)}")
    else:
        videos = sorted(p for p in glob.glob(os.path.join(folder, "*")) if os.path.isfile(p))
    try:
        result = benchmark_faces(
            videos,
            settings=config.faces,
            workdir=WORKDIR.value,
            max_frames=MAX_FRAMES.value,
            exact_max_frames=EXACT_MAX_FRAMES.value,
        )
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    app.run(main)
