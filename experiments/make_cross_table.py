"""The cross-dataset / cross-compression table from saved evaluations.

Usage:
  python -m experiments.make_cross_table --workdir=WORKDIR [--evaluations=DIR1,DIR2,...]

Reads the metrics.json of each evaluation folder written by `experiments.evaluate`
(a folder, or a quoted glob; default: every finished WORKDIR/evaluation/*) and writes
WORKDIR/results/cross.{csv,md,tex}: rows = training data and protocol (each model's
manifest), columns = test sets (FF++ and the generated dataset per method and
compression, each other dataset), frame and video AUC with 95% intervals, and
DeepfakeBench's published Xception figures where the cell matches. Library:
`experiments.pipeline.cross_tables`.
"""

from __future__ import annotations

import os

from absl import app, flags, logging

from experiments import cli
from experiments.pipeline import cross_tables, devices

WORKDIR = flags.DEFINE_string("workdir", None, "Work directory; the table goes to its results/.")
EVALUATIONS = flags.DEFINE_list(
    "evaluations", None, "Evaluation folders or quoted globs (default: WORKDIR/evaluation/*)."
)
flags.mark_flag_as_required("workdir")


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    devices.quiet_tensorflow_logs()  # before TensorFlow loads (its CUDA noise on CPUs)
    workdir = cli.workdir(WORKDIR)
    specs = EVALUATIONS.value or [os.path.join(workdir.evaluation(), "*")]
    with cli.stage_errors(f"--workdir={workdir.root!r}"):
        folders = cross_tables.expand_folders(specs)
        paths = cross_tables.make_cross_table(workdir, folders)
    logging.info("make_cross_table: %d evaluations -> %s", len(folders), ", ".join(paths))


if __name__ == "__main__":
    app.run(main)
