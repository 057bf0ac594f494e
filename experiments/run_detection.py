"""Trains and evaluates the detector for Table 1 (known) or Table 2 (leave-one-out).

Usage:
  python -m experiments.run_detection --protocol=known --likelihoods_dir=WORKDIR/likelihoods \
      --workdir=WORKDIR [--config=smoke|paper] [--methods=Deepfakes,Face2Face] \
      [--epochs=N] [--batch_size=N] [--bootstrap_samples=N]

Writes `WORKDIR/detection/<protocol>/<method>/{model.keras,predictions.csv,metrics.json}`
and `summary.json`. Methods whose metrics.json exists are skipped. Paper (Khodabakhsh
& Busch, BIOSIG 2020): known attacks 98.25-99.30%, unseen methods 95.73% on average.
"""

from __future__ import annotations

import dataclasses
import sys

from absl import app, flags, logging

from classifier import protocols
from data_prep.config import METHODS
from experiments.configs import CONFIG_NAMES, load_config
from experiments.pipeline import detection, run_log

PROTOCOL = flags.DEFINE_enum("protocol", None, list(protocols.PROTOCOLS), "Which table.")
LIKELIHOODS_DIR = flags.DEFINE_string(
    "likelihoods_dir", None, "Folder written by extract_likelihoods."
)
WORKDIR = flags.DEFINE_string("workdir", None, "Work directory; output in WORKDIR/detection.")
CONFIG = flags.DEFINE_enum("config", "smoke", list(CONFIG_NAMES), "Experiment configuration.")
METHODS_FLAG = flags.DEFINE_list("methods", list(METHODS), "Methods (table columns) to run.")
EPOCHS = flags.DEFINE_integer("epochs", None, "Override the config's detector epochs.")
BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Override the config's batch size.")
BOOTSTRAP = flags.DEFINE_integer(
    "bootstrap_samples", None, "Override the config's bootstrap resamples."
)
flags.mark_flags_as_required(["protocol", "likelihoods_dir", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    unknown = [m for m in METHODS_FLAG.value if m not in METHODS]
    if unknown or not METHODS_FLAG.value:
        raise app.UsageError(
            f"--methods: unknown {unknown or 'empty list'}; choose from {','.join(METHODS)}."
        )
    overrides = {
        "epochs": EPOCHS.value,
        "batch_size": BATCH_SIZE.value,
        "bootstrap_samples": BOOTSTRAP.value,
    }
    for name, value in overrides.items():
        if value is not None and value < 1:
            raise app.UsageError(f"--{name} must be at least 1, got {value}.")
    config = load_config(CONFIG.value)
    detector = dataclasses.replace(
        config.detector, **{k: v for k, v in overrides.items() if v is not None}
    )
    run_log.record_command(WORKDIR.value)
    try:
        summary = detection.run(
            likelihoods_dir=LIKELIHOODS_DIR.value,
            workdir=WORKDIR.value,
            protocol=PROTOCOL.value,
            config=detector,
            config_name=config.name,
            methods=METHODS_FLAG.value,
            verbose=2,
        )
    except (FileNotFoundError, ValueError) as e:
        raise app.UsageError(str(e)) from e
    for method, entry in summary["methods"].items():
        if entry["status"] == "done":
            logging.info("%s: test frame accuracy %.4f", method, entry["test_frame_accuracy"])
        else:
            logging.warning("%s: missing (%s)", method, entry["reason"])
    if not any(e["status"] == "done" for e in summary["methods"].values()):
        logging.error("No method could be run: every one lacks data (see above).")
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
