"""Scores your own videos and images with a trained model: verdicts, heatmaps, a report.

Usage:
  python -m experiments.detect --model=MODEL_DIR --input=PATH [--input=PATH2 ...] \
      [--out=detect_out] [--frames_per_video=32]

Unlike the pipeline stages this binary takes no `--config`/`--workdir`: it is for
anyone holding a model folder (written by `export_model`, e.g. `WORKDIR/model`). Each
PATH is a video, an image, a folder (recursively: every video and image inside; other
files there are skipped and counted) or a quoted glob, in any mix. Faces are detected
and cropped exactly as in training; every scored frame gets its fake probability and
likelihood map, each input its score (mean over its frames) with a 95% bootstrap
interval over frames and a verdict at the model's threshold.

Writes `OUT/report.json`, `OUT/frames.csv`, `OUT/frames/<stem>_<n>/<frame>.png`
(frame with the face heatmap, crop, raw map), `OUT/videos/<stem>_<n>.mp4` (overlay
video), `OUT/plots/` and a self-contained `OUT/report.html`
(experiments/pipeline/detect_report.py, html_report.py).

Exit status: 0 every input scored; 3 some inputs failed (the report lists the
errors); 1 a usage error (bad model folder, unwritable --out, an --input matching
nothing), with nothing written.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

from experiments import cli

MODEL = flags.DEFINE_string(
    "model", None, "Model folder written by export_model (e.g. WORKDIR/model)."
)
INPUT = flags.DEFINE_multi_string(
    "input", None, "A video, image, folder or quoted glob; repeat the flag for more."
)
OUT = flags.DEFINE_string("out", "detect_out", "Output folder for the report.")
FRAMES_PER_VIDEO = flags.DEFINE_integer(
    "frames_per_video", 32, "Evenly spaced frames scored per video (0: every frame)."
)
flags.mark_flags_as_required(["model", "input"])

EXIT_SOME_FAILED = 3


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    if FRAMES_PER_VIDEO.value < 0:
        raise app.UsageError(
            f"--frames_per_video must be >= 0 (0 = every frame), got {FRAMES_PER_VIDEO.value}."
        )
    if not (OUT.value or "").strip():
        raise app.UsageError("--out is empty: name the folder the report is written to.")
    # TensorFlow loads only once the flags are known to be usable, so --help and flag
    # mistakes answer at once.
    from experiments.pipeline import devices

    devices.quiet_tensorflow_logs()
    from data_prep import files
    from experiments.pipeline import detect_report, detector
    from experiments.pipeline.detect_inputs import expand_inputs

    with cli.stage_errors():
        inputs = expand_inputs(INPUT.value, detector.input_kind)
    if not inputs.files:
        raise app.UsageError(
            f"--input names no video or image ({len(inputs.skipped)} other file(s) found); "
            f"videos: {' '.join(detector.VIDEO_EXTENSIONS)}; images: "
            f"{' '.join(detector.IMAGE_EXTENSIONS)}."
        )
    with cli.stage_errors(f"--out={OUT.value!r}"):
        model = detector.Detector.load(MODEL.value)
        files.check_writable(OUT.value, "--out")
    logging.info(
        "detect: %d input(s), %d non-media file(s) skipped, model %s (threshold %.3f)",
        len(inputs.files),
        len(inputs.skipped),
        MODEL.value,
        model.threshold,
    )
    report = detect_report.run(model, inputs, OUT.value, FRAMES_PER_VIDEO.value)
    counts = report["counts"]
    logging.info(
        "detect: %d scored, %d failed, %d skipped; report in %s/%s",
        counts["scored"],
        counts["failed"],
        counts["skipped"],
        OUT.value,
        detect_report.REPORT_HTML,
    )
    if counts["failed"]:
        sys.exit(EXIT_SOME_FAILED)


if __name__ == "__main__":
    app.run(main)
