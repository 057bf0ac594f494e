"""Peak memory of `run_detection` at 4x and 40x a likelihood tree.

    python -m experiments.bench_detection_memory --likelihoods_dir=WORKDIR/likelihoods \
        [--copies=4,40] [--method=Deepfakes] [--epochs=1] [--code_root=OTHER_CHECKOUT]

Copies the tree's shards under new video ids into a temporary folder (deleted after),
runs one known-attack detector for `--epochs` in a fresh process per size and prints
one JSON line per size with the maps and the peak resident memory
(`experiments/pipeline/detection_memory.py`). Figures and the machine: BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from experiments import cli
from experiments.pipeline import detection_memory

LIKELIHOODS_DIR = flags.DEFINE_string(
    "likelihoods_dir", None, "A likelihoods folder of extract_likelihoods (only read)."
)
COPIES = flags.DEFINE_list("copies", ["4", "40"], "How many copies of the tree to measure.")
METHOD = flags.DEFINE_string("method", "Deepfakes", "The method of the known-attack detector.")
EPOCHS = flags.DEFINE_integer("epochs", 1, "Detector epochs.")
CODE_ROOT = flags.DEFINE_string(
    "code_root", None, "Another checkout of the project to measure (default: this one)."
)
flags.mark_flag_as_required("likelihoods_dir")


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    if not os.path.isdir(LIKELIHOODS_DIR.value):
        raise app.UsageError(f"--likelihoods_dir {LIKELIHOODS_DIR.value!r} is not a folder.")
    try:
        copies = [int(c) for c in COPIES.value]
    except ValueError:
        raise app.UsageError(f"--copies must be integers, got {COPIES.value}.") from None
    if any(c < 1 for c in copies) or EPOCHS.value < 1:
        raise app.UsageError("--copies and --epochs must be at least 1.")
    for result in detection_memory.benchmark(
        LIKELIHOODS_DIR.value, copies, METHOD.value, EPOCHS.value, CODE_ROOT.value
    ):
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    app.run(main)
