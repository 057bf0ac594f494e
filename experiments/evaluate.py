"""Evaluates an exported model on another dataset or compression: scores only.

Usage:
  python -m experiments.evaluate --model=MODEL_DIR --dataset=ffpp|generated|celebdf|dfdc|folder \
      --root=DIR --out=DIR [--splits_dir=DIR] [--compression=raw|c23|c40] [--split=test] \
      [--workers=N] [--frames_per_video=N]
  python -m experiments.evaluate ... --compression=raw,c23,c40 \
      --out=WORKDIR/evaluation/generated_test_{compression}

MODEL_DIR is a folder written by `export_model` (e.g. WORKDIR/model). To evaluate
another detector of a work directory (a protocol and method), export it first:
`python -m experiments.export_model --workdir=WORKDIR --protocol=loo --method=Deepfakes
--out=DIR`; the model folder carries its UBM, face settings and what it was trained on.

Crops the faces of the chosen split with the model's saved face settings into
OUT/faces, scores every crop (UBM likelihood maps, then the detector), and writes
OUT/predictions.csv and OUT/metrics.json: frame and video AUC, EER and accuracy with
95% bootstrap intervals over videos, overall and per method, what was evaluated
(dataset, root, split, compression, counts, the adapter's split policy where the
dataset has no official split) and the model's training data. Nothing is written to
the model folder (verified by checksum afterwards). Several levels in --compression
are evaluated one after the other with the model loaded once, each into --out with
`{compression}` replaced by the level. `make_cross_table` builds
results/cross.{csv,md,tex} from such folders. Library: `experiments.pipeline.evaluation`.
"""

from __future__ import annotations

import json

from absl import app, flags, logging

from data_prep.datasets import ADAPTERS
from data_prep.datasets.ffpp import COMPRESSIONS
from data_prep.methods import SPLITS
from experiments import cli

MODEL = flags.DEFINE_string("model", None, "Model folder written by export_model.")
DATASET = flags.DEFINE_string("dataset", None, f"One of {', '.join(ADAPTERS)}.")
ROOT = flags.DEFINE_string("root", None, "The dataset's folder (a CSV file for folder).")
OUT = flags.DEFINE_string("out", None, "The evaluation's folder (e.g. WORKDIR/evaluation/NAME).")
SPLITS_DIR = flags.DEFINE_string(
    "splits_dir", None, "FF++ only: the folder with the official train/val/test.json."
)
COMPRESSION = flags.DEFINE_list(
    "compression",
    ["raw"],
    "Level raw, c23 or c40 of FF++ or the generated dataset (whose c23 and c40 are JPEG "
    "stand-ins), or several separated by commas (--out then holds {compression}); "
    "recorded as given by the others.",
)
SPLIT = flags.DEFINE_enum("split", "test", list(SPLITS), "The split scored.")
WORKERS = flags.DEFINE_integer("workers", 1, "Face-crop processes.", lower_bound=1)
FRAMES_PER_VIDEO = flags.DEFINE_integer(
    "frames_per_video",
    None,
    "Evenly spaced frames per video (0: every frame; default: the model's).",
)
BOOTSTRAP = flags.DEFINE_integer(
    "bootstrap_samples", 1000, "Bootstrap resamples of the intervals.", lower_bound=1
)
flags.mark_flags_as_required(["model", "dataset", "root", "out"])


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    if DATASET.value not in ADAPTERS:
        raise app.UsageError(
            f"Unknown --dataset={DATASET.value!r}: use one of {', '.join(ADAPTERS)}."
        )
    if FRAMES_PER_VIDEO.value is not None and FRAMES_PER_VIDEO.value < 0:
        raise app.UsageError(f"--frames_per_video must be >= 0, got {FRAMES_PER_VIDEO.value}.")
    if not OUT.value.strip():
        raise app.UsageError("--out is empty: name the evaluation's folder.")
    levels = list(dict.fromkeys(COMPRESSION.value))
    if not levels:
        raise app.UsageError("--compression is empty: use raw, c23 or c40 (or several).")
    if len(levels) > 1 and "{compression}" not in OUT.value:
        raise app.UsageError(
            f"--compression={','.join(levels)} evaluates {len(levels)} levels, each into its "
            "own folder: put {compression} in --out (e.g. --out=DIR/ffpp_{compression})."
        )
    if DATASET.value in ("ffpp", "generated"):
        for level in levels:
            if level not in COMPRESSIONS:
                raise app.UsageError(
                    f"Unknown --compression level {level!r}: use {', '.join(COMPRESSIONS)}."
                )
    out_dirs = {level: OUT.value.replace("{compression}", level) for level in levels}
    from experiments.pipeline import devices

    devices.quiet_tensorflow_logs()
    from experiments.pipeline import evaluation

    with cli.stage_errors(f"--out={OUT.value!r}"):
        reports = evaluation.evaluate_levels(
            MODEL.value,
            DATASET.value,
            ROOT.value,
            out_dirs,
            splits_dir=SPLITS_DIR.value,
            split=SPLIT.value,
            workers=WORKERS.value,
            frames_per_video=FRAMES_PER_VIDEO.value,
            bootstrap_samples=BOOTSTRAP.value,
        )
    for level, report in reports.items():
        summary = {
            k: report["metrics"][k]["value"] for k in ("frame_auc", "video_auc", "frame_accuracy")
        }
        logging.info(
            "evaluate (%s): %s -> %s/metrics.json", level, json.dumps(summary), out_dirs[level]
        )


if __name__ == "__main__":
    app.run(main)
