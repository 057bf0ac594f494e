"""The pipeline at 1/8, 1/4 and the full size of FaceForensics++: time and memory per stage.

    python -m experiments.bench_scale --workdir=DIR [--config=smoke] [--fractions=0.125,0.25,1] \
        [--frames=2] [--workers=2] [--detector_epochs=2]

Generates the FF++-layout dataset at each fraction of FF++ (1,000 identities at full
size: 720/140/140 videos per source), runs every stage of `make reproduce` with the
smoke configuration on it, and prints one JSON line per fraction with the wall time
and peak resident memory of every stage (`experiments/pipeline/scale_benchmark.py`).
Figures and the machine: BENCHMARKS.md.
"""

from __future__ import annotations

import json

from absl import app, flags

from experiments import cli
from experiments.pipeline import scale_benchmark

CONFIG, WORKDIR = cli.define_config_and_workdir(
    workdir_help="Scratch folder; one work directory per fraction under it."
)
FRACTIONS = flags.DEFINE_list("fractions", ["0.125", "0.25", "1"], "Fractions of FF++'s size.")
FRAMES = flags.DEFINE_integer("frames", 2, "Frames per generated video (all are cropped).")
WORKERS = flags.DEFINE_integer("workers", 2, "Face-stage worker processes.")
DETECTOR_EPOCHS = flags.DEFINE_integer("detector_epochs", 2, "Detector epochs per method.")


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    cli.experiment_config(CONFIG)  # an unknown name stops here
    try:
        fractions = [float(f) for f in FRACTIONS.value]
        for fraction in fractions:
            scale_benchmark.identities_at(fraction)
    except ValueError as err:
        raise app.UsageError(f"--fractions: {err}") from None
    if FRAMES.value < 2:
        raise app.UsageError("--frames must be at least 2 (the generator's minimum).")
    for fraction in fractions:
        result = scale_benchmark.benchmark_scale(
            WORKDIR.value,
            fraction,
            config=CONFIG.value,
            frames=FRAMES.value,
            workers=WORKERS.value,
            detector_epochs=DETECTOR_EPOCHS.value,
        )
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    app.run(main)
