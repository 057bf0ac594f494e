r"""Generates a miniature FaceForensics++ (raw, c23, c40) with official-format splits.

Usage:
  python -m experiments.make_synthetic_ffpp --config=smoke|paper --workdir=WORKDIR \
      [--out=DIR] [--width=192] [--height=160] [--container=avi|mkv] \
      [--config.synthetic.identities=N] [--config.synthetic.frames=N] \
      [--config.synthetic.seed=N] [--config.synthetic.compressions=raw,c23,c40]

Writes into WORKDIR/synthetic_ffpp (or --out) `original_sequences/youtube/<level>/videos/
<id>.<container>`, `manipulated_sequences/{Deepfakes,Face2Face,FaceSwap,NeuralTextures}/
<level>/videos/<target>_<source>.<container>` for each level of compressions (FFV1;
raw is lossless, c23 and c40 are every raw frame through JPEG at a light and a heavy
quality, stand-ins for FF++'s H.264 levels, see `data_prep.datasets.generated`), one
mask per fake, `splits/{train,val,test}.json` and `synthetic.json`; its size comes from
the config's `synthetic` section (identities: even, >= 6; frames per video; seed;
compressions), each field overridden by `--config.synthetic.<field>`.
A dataset already complete with these settings is kept as it is; one lacking a
requested level gains it, its videos kept.
`prepare_faces --dataset=generated` reads it. The smoke run of Khodabakhsh & Busch
(BIOSIG 2020) uses it in place of FF++; its numbers are not comparable with the paper's.
"""

from __future__ import annotations

import json

from absl import app, flags, logging

from data_prep.files import check_writable
from data_prep.synthetic import CONTAINERS, generate_synthetic_ffpp
from experiments import cli

CONFIG, WORKDIR = cli.define_config_and_workdir(
    workdir_help="Work directory; the dataset goes to WORKDIR/synthetic_ffpp unless --out."
)
OUT = flags.DEFINE_string(
    "out", None, "Output folder (the FF++ root of the new dataset); default WORKDIR/synthetic_ffpp."
)
WIDTH = flags.DEFINE_integer("width", 192, "Frame width in pixels.", lower_bound=96)
HEIGHT = flags.DEFINE_integer("height", 160, "Frame height in pixels.", lower_bound=96)
CONTAINER = flags.DEFINE_enum("container", "avi", CONTAINERS, "Container of the FFV1 videos.")


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    workdir = cli.workdir(WORKDIR)
    config = cli.experiment_config(CONFIG, workdir, own_sections=("synthetic",))
    synthetic = config.synthetic
    out, what = (OUT.value, "--out") if OUT.value else (workdir.generated_dataset, "--workdir")
    with cli.stage_errors(f"{what}={out!r}"):
        check_writable(out, what)
        cli.start_stage(workdir, config)
        summary = generate_synthetic_ffpp(
            out,
            identities=synthetic.identities,
            frames=synthetic.frames,
            seed=synthetic.seed,
            width=WIDTH.value,
            height=HEIGHT.value,
            container=CONTAINER.value,
            compressions=synthetic.compressions,
        )
    pairs = {split: len(p) for split, p in summary["pairs"].items()}
    logging.info(
        "Videos per source: %s at %s; pairs per split: %s",
        summary["videos"],
        ", ".join(summary["compressions"]),
        json.dumps(pairs),
    )


if __name__ == "__main__":
    app.run(main)
