"""Exports one trained detector of a work directory as a self-contained model folder.

Usage:
  python -m experiments.export_model --workdir=WORKDIR --out=MODEL_DIR \\
      [--protocol=all] [--method=all] [--config=smoke] [--overwrite]

Writes MODEL_DIR (via MODEL_DIR.tmp, renamed when complete): the UBM's averaged
weights (no optimizer state) and config, the detector (`detection/<protocol>/<method>/
model.keras`), the face-crop settings of faces/config.json, the decision threshold
(0.5) and manifest.json (versions, training data, val and test metrics, sha256 per
file). Loading it (`experiments.pipeline.detector.Detector.load`) needs neither the
work directory nor the checkpoints. Library: `experiments.pipeline.model_folder`.
"""

from __future__ import annotations

import os

from absl import app, flags, logging

from classifier.config import ALL, DETECTION_PROTOCOLS
from experiments import cli

CONFIG, WORKDIR = cli.define_config_and_workdir(
    default_config=None,
    workdir_help="Work directory with ubm/ and detection/<protocol>/<method>/ finished.",
)
OUT = flags.DEFINE_string("out", None, "The model folder to write (must not exist, or be empty).")
PROTOCOL = flags.DEFINE_enum(
    "protocol", ALL, list(DETECTION_PROTOCOLS), "Which protocol's detector to export."
)
METHOD = flags.DEFINE_string(
    "method", None, "The detector of that protocol (a method); default 'all' for --protocol=all."
)
OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing non-empty --out.")
flags.mark_flag_as_required("out")


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    if not (OUT.value or "").strip():
        raise app.UsageError("--out is empty: name the model folder to write.")
    workdir = cli.workdir(WORKDIR)
    # Only needed where faces/config.json is missing (the face settings): the recorded
    # configuration, or the one named by --config.
    recorded = os.path.exists(workdir.config)
    config = cli.experiment_config(CONFIG, workdir) if CONFIG.value or recorded else None
    from experiments.pipeline import devices

    if os.path.isdir(workdir.root):  # a mistyped --workdir is not created
        cli.start_stage(workdir, None)

    devices.quiet_tensorflow_logs()
    from experiments.pipeline import model_folder

    with cli.stage_errors(f"--out={OUT.value!r}"):
        manifest = model_folder.export_model(
            workdir,
            OUT.value,
            protocol=PROTOCOL.value,
            method=METHOD.value,
            config=config,
            overwrite=OVERWRITE.value,
        )
    test = (manifest["metrics"].get("test") or {}).get("frame_accuracy", {})
    logging.info(
        "Exported %s/%s to %s (test frame accuracy %s).",
        PROTOCOL.value,
        manifest["trained_on"]["method"],
        OUT.value,
        test.get("value"),
    )


if __name__ == "__main__":
    app.run(main)
