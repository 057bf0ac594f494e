r"""Localisation on still images with masks: the UBM's and the background model's maps.

Usage:
  python -m experiments.localise_images --config=smoke --workdir=WORKDIR --images=DIR \
      [--out=WORKDIR/results/images] [--ubm_dir=WORKDIR/ubm] \
      [--background_dir=WORKDIR/background_ubm | --nobackground]

DIR holds images `NAME.png` (or .jpg, ...) with optional masks `NAME_mask.png` beside
them, white where manipulated (e.g. frames of FF++ with their mask frames). The largest
face of each image is cropped as in training, its mask with the same box; writes
`OUT/images.{csv,md,tex}` (per image: image log-likelihood under both models, PNG
complexity, pixel AUC/AP of -log-likelihood and of the likelihood ratio against the
mask) and `OUT/fig_images.png`. Images without a face or unreadable are reported and
skipped (exit 3). Library: `experiments.pipeline.image_localisation`.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from experiments import cli
from experiments.pipeline import devices

CONFIG, WORKDIR = cli.define_config_and_workdir(
    workdir_help="Work directory with the trained ubm/ (and background_ubm/)."
)
IMAGES = flags.DEFINE_string("images", None, "Folder of images and NAME_mask.png masks.")
OUT = flags.DEFINE_string("out", None, "Output folder (default WORKDIR/results/images).")
UBM_DIR = flags.DEFINE_string("ubm_dir", None, "train_ubm folder (default WORKDIR/ubm).")
BACKGROUND_DIR = flags.DEFINE_string(
    "background_dir",
    None,
    "train_ubm --background folder (default WORKDIR/background_ubm where it exists).",
)
BACKGROUND = flags.DEFINE_boolean(
    "background", True, "Use the background model (likelihood-ratio score) when there is one."
)
flags.mark_flag_as_required("images")


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    workdir = cli.workdir(WORKDIR)
    config = cli.experiment_config(CONFIG, workdir)
    ubm_dir = UBM_DIR.value or workdir.ubm
    background_dir = None
    if BACKGROUND.value:
        background_dir = BACKGROUND_DIR.value or workdir.background_ubm
        if not os.path.isdir(background_dir):
            if BACKGROUND_DIR.value:
                raise app.UsageError(
                    f"--background_dir={background_dir!r} is not a folder: train one with "
                    "train_ubm --background, or pass --nobackground."
                )
            logging.info("No background model in %s: no likelihood-ratio score.", background_dir)
            background_dir = None
    out_dir = OUT.value or os.path.join(workdir.results, "images")
    devices.quiet_tensorflow_logs()
    from experiments.pipeline import image_localisation

    with cli.stage_errors(f"--out={out_dir!r}"):
        cli.start_stage(workdir, config)
        rows = image_localisation.localise_images(
            IMAGES.value,
            ubm_dir,
            out_dir,
            config.faces,
            background_dir=background_dir,
            header=f"UBM {ubm_dir}; background {background_dir or 'none'}; images {IMAGES.value}",
        )
    failed = [r for r in rows if "error" in r]
    for row in rows:
        if "error" in row:
            logging.warning("%s: skipped: %s", row["image"], row["error"])
        else:
            logging.info(
                "%s: loglik %.1f nats, pixel AUC -loglik %s, likelihood ratio %s",
                row["image"],
                row["image_loglik"],
                f"{row['neg_loglik_pixel_auc']:.3f}",
                f"{row['likelihood_ratio_pixel_auc']:.3f}",
            )
    logging.info("%d images scored, %d skipped: %s", len(rows) - len(failed), len(failed), out_dir)
    if failed:
        sys.exit(3)


if __name__ == "__main__":
    app.run(main)
