r"""Generates a miniature FaceForensics++ (raw, lossless) with official-format splits.

Usage:
  python -m experiments.make_synthetic_ffpp --out=DIR [--identities=12] [--frames=24] \
      [--seed=0] [--width=192] [--height=160] [--container=avi|mkv]

Writes `DIR/original_sequences/youtube/raw/videos/<id>.<container>`,
`DIR/manipulated_sequences/{Deepfakes,Face2Face,FaceSwap,NeuralTextures}/raw/videos/
<target>_<source>.<container>` (FFV1), `DIR/splits/{train,val,test}.json` and
`DIR/synthetic.json`. The smoke run of Khodabakhsh & Busch (BIOSIG 2020) uses it in
place of FF++; its numbers are not comparable with the paper's.
"""

from __future__ import annotations

import json

from absl import app, flags, logging

from data_prep.config import SyntheticConfig
from data_prep.synthetic import CONTAINERS, generate_synthetic_ffpp

_DEFAULTS = SyntheticConfig()

OUT = flags.DEFINE_string("out", None, "Output folder (the FF++ root of the new dataset).")
IDENTITIES = flags.DEFINE_integer(
    "identities", _DEFAULTS.identities, "People (even, >= 6); one original video each."
)
FRAMES = flags.DEFINE_integer("frames", _DEFAULTS.frames, "Frames per video.", lower_bound=2)
SEED = flags.DEFINE_integer("seed", _DEFAULTS.seed, "Random seed; the dataset is a function of it.")
WIDTH = flags.DEFINE_integer("width", 192, "Frame width in pixels.", lower_bound=96)
HEIGHT = flags.DEFINE_integer("height", 160, "Frame height in pixels.", lower_bound=96)
CONTAINER = flags.DEFINE_enum("container", "avi", CONTAINERS, "Container of the FFV1 videos.")
flags.mark_flag_as_required("out")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        summary = generate_synthetic_ffpp(
            OUT.value,
            identities=IDENTITIES.value,
            frames=FRAMES.value,
            seed=SEED.value,
            width=WIDTH.value,
            height=HEIGHT.value,
            container=CONTAINER.value,
        )
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    except OSError as err:
        raise app.UsageError(f"Cannot write to --out={OUT.value!r} ({err}).") from None
    pairs = {split: len(p) for split, p in summary["pairs"].items()}
    logging.info("Videos per source: %s; pairs per split: %s", summary["videos"], json.dumps(pairs))


if __name__ == "__main__":
    app.run(main)
