r"""Crops the faces of a dataset's videos (FF++, Celeb-DF, DFDC, a folder) into 64x64 shards.

Usage:
  python -m experiments.prepare_faces --config=smoke|paper --workdir=WORKDIR \
      --dataset=ffpp --dataset_root=FFPP --splits_dir=SPLITS [--config.faces.compression=c23]
  python -m experiments.prepare_faces --config=smoke --workdir=WORKDIR --dataset=generated \
      [--dataset_root=DIR]
  python -m experiments.prepare_faces --config=paper --workdir=WORKDIR \
      --dataset=celebdf|dfdc|folder --dataset_root=DIR_OR_CSV
  python -m experiments.prepare_faces --config=cpu --workdir=WORKDIR \
      --dataset=crops --dataset_root=DIR_OR_CSV [--redetect]
  [--workers=N] and the config's face settings, each a --config.faces.<field>:
      [--config.faces.methods=Deepfakes,Face2Face,...] [--config.faces.frames_per_video=N]
      [--config.faces.face_finder=fast|exact] [--config.faces.max_frames=N]

`--dataset=generated` without `--dataset_root` reads WORKDIR/synthetic_ffpp (written
by make_synthetic_ffpp); it has its own splits. Celeb-DF (`celebdf`: its test list as
`test`, the other videos in no split), DFDC (`dfdc`: each part's metadata.json) and a
generic folder (`folder`: real/ and fake/, optionally under train/val/test, or a CSV
path,label[,split]; no split: test) bring their own splits (see
`data_prep.datasets`); face crops (`crops`: a face dump with metadata.csv, or the folder
layouts holding crops) are taken as given, resized, not searched for a face (unless
--redetect), and split by source with a seed where they bring no split; the config's
FF++ methods do not apply to them, so every method they hold is taken unless
--config.faces.methods names some. `face_finder` is how faces are found (fast: keyframes
and interpolation; exact: dlib on every full-resolution frame, the FF++ reference). Writes
`WORKDIR/faces/<split>/<source>/<video>.tfrecord` (one shard per video; source =
original or the method), `WORKDIR/faces/manifest.json` (per-video counts, totals per
split and method, settings) and `WORKDIR/faces/config.json`. Running the same command
again skips finished videos. The exit status is 3 when a video failed or a requested
folder or split file was missing (all other videos are processed), 1 for a usage
error. Khodabakhsh & Busch (BIOSIG 2020), Sec. 4: dlib face crops as in
FaceForensics++.
"""

from __future__ import annotations

import dataclasses
import os

from absl import app, flags, logging

from data_prep.datasets import ADAPTERS, CropsDataset, GeneratedDataset, open_dataset
from data_prep.face_settings import GIVEN
from data_prep.face_stage import prepare_faces
from data_prep.files import check_writable
from experiments import cli
from experiments.pipeline import devices
from experiments.pipeline.workdir import MANIFEST_FILE, Workdir

CONFIG, WORKDIR = cli.define_config_and_workdir(
    workdir_help="Work directory; crops go to WORKDIR/faces."
)
DATASET = flags.DEFINE_enum(
    "dataset",
    None,
    list(ADAPTERS),
    "ffpp: FaceForensics++ as its download script wrote it (needs --dataset_root and "
    "--splits_dir); generated: the dataset make_synthetic_ffpp wrote; celebdf: Celeb-DF v2 "
    "(Celeb-real/, YouTube-real/, Celeb-synthesis/, List_of_testing_videos.txt); dfdc: "
    "DFDC parts, each folder with its metadata.json; folder: real/ and fake/ (optionally "
    "<split>/real/, <split>/fake/) or a CSV file path,label[,split]; crops: face crops "
    "(metadata.csv with videoname,label[,original], or the folder layouts holding crops).",
)
DATASET_ROOT = flags.DEFINE_string(
    "dataset_root",
    None,
    "The dataset's folder (FF++: holding original_sequences/ and manipulated_sequences/; "
    "folder: a folder or a CSV file). Default for --dataset=generated: "
    "WORKDIR/synthetic_ffpp.",
)
SPLITS_DIR = flags.DEFINE_string(
    "splits_dir",
    None,
    "FF++ only: folder with the official train.json, val.json, test.json (dataset/splits "
    "of the FaceForensics repository). Required: splits are never invented.",
)
REDETECT = flags.DEFINE_bool(
    "redetect",
    False,
    "crops only: search each image for a face with dlib and cut the FF++ crop (for images "
    "that are whole frames), instead of taking every image as the crop.",
)
WORKERS = flags.DEFINE_integer(
    "workers", os.cpu_count() or 1, "Processes working on videos in parallel.", lower_bound=1
)
# Distinct from absl's exit status 1 for usage errors, so scripts can tell "ran, with
# some videos failed or folders missing" from "did not run".
EXIT_SOME_FAILED = 3


def dataset_root(workdir: Workdir) -> str:
    """--dataset_root, or the generated dataset's folder in the workdir."""
    if DATASET_ROOT.value:
        return DATASET_ROOT.value
    if DATASET.value == GeneratedDataset.name:
        return workdir.generated_dataset
    what = {
        "ffpp": "the folder the FF++ download script wrote (holding original_sequences/ and "
        "manipulated_sequences/)",
        "celebdf": "the Celeb-DF v2 folder (holding Celeb-real/, YouTube-real/, "
        "Celeb-synthesis/ and List_of_testing_videos.txt)",
        "dfdc": "the folder holding the DFDC parts, each with its metadata.json",
        "folder": "a folder holding real/ and fake/ (or <split>/real/ and <split>/fake/), "
        "or a CSV file path,label[,split]",
        "crops": "a folder of face crops with metadata.csv, or real/ and fake/ folders of "
        "crops, or a CSV file path,label[,split]",
    }.get(DATASET.value, "the dataset's folder")
    raise app.UsageError(f"--dataset_root is required with --dataset={DATASET.value}: {what}.")


def main(argv: list[str]) -> int:
    cli.reject_arguments(argv)
    devices.quiet_tensorflow_logs()  # before TensorFlow loads (its CUDA noise on CPUs)
    workdir = cli.workdir(WORKDIR)
    config = cli.experiment_config(CONFIG, workdir, own_sections=("faces",))
    if DATASET.value is None:
        raise app.UsageError(f"--dataset is required: one of {', '.join(ADAPTERS)}.")
    if DATASET.value == "ffpp" and not SPLITS_DIR.value:
        raise app.UsageError(
            "--splits_dir is required: pass the folder with the official FF++ split files "
            "train.json, val.json and test.json (dataset/splits of the FaceForensics "
            "repository). Splits are never invented."
        )
    settings = config.faces
    if REDETECT.value and DATASET.value != CropsDataset.name:
        raise app.UsageError("--redetect applies to --dataset=crops only.")
    if DATASET.value == CropsDataset.name and not REDETECT.value:
        settings = dataclasses.replace(settings, face_finder=GIVEN)
    with cli.stage_errors(f"--workdir={workdir.root!r} (choose a writable folder)"):
        dataset = open_dataset(DATASET.value, dataset_root(workdir), SPLITS_DIR.value)
        check_writable(workdir.faces)
        cli.start_stage(workdir, config)
        manifest = prepare_faces(dataset, workdir.faces, settings, workers=WORKERS.value)
    failed = manifest["failed_videos"]
    problems = manifest["problems"]
    if failed or problems:
        logging.error(
            "%d videos failed and %d problems were found (see %s): the other videos are done.",
            failed,
            len(problems),
            os.path.join(workdir.faces, MANIFEST_FILE),
        )
        return EXIT_SOME_FAILED
    return 0


if __name__ == "__main__":
    app.run(main)
