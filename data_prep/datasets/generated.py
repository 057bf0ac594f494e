"""The generated-dataset adapter: the miniature FF++ that `data_prep.synthetic` writes.

The generator lays its videos out as FaceForensics++ does (see `ffpp`), at the `raw`
level and, where asked (by default), at stand-ins for FF++'s `c23` and `c40`, and
writes beside them its own split files in the official format and two JSON files:

    <root>/splits/{train,val,test}.json
    <root>/.synthetic_settings.json      written first: what a partial run was making
    <root>/synthetic.json                written last: the dataset is complete, with
                                         the levels it holds (`compressions`)

FF++ encodes c23 and c40 with H.264 at constant rate factor 23 and 40 (Roessler et al.,
ICCV 2019). OpenCV's wheels have no H.264 encoder, so the generated c23 and c40 are
each raw frame passed through JPEG at one quality (`LEVEL_CODECS`), chosen so that the
PSNR to raw is close to what x264 at CRF 23 and 40 gives on the same videos, and the
degraded frames stored losslessly (FFV1): an intra-frame stand-in, without H.264's
motion compensation, that reads back the same everywhere.

The adapter lists a root only once `synthetic.json` is there, with the splits of
`<root>/splits`, so a half-generated dataset is never taken for a complete one, and
only at a level the marker names (a dataset generated before the levels existed holds
`raw` only).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from data_prep.datasets.base import DatasetListing
from data_prep.datasets.ffpp import COMPRESSIONS, check_compression, list_ffpp_videos
from data_prep.files import read_json

MARKER = "synthetic.json"  # written last: the dataset is complete
SETTINGS = ".synthetic_settings.json"  # written first: what a partial run was making
SPLITS_DIR = "splits"
RAW = "raw"
# Each non-raw level: the codec applied to every raw frame, and its parameters. The
# qualities match the PSNR to raw of x264 (yuv420p, preset medium) on the smoke
# dataset's 120 raw videos: CRF 23 34.8 dB, JPEG 60 34.9 dB; CRF 40 28.1 dB, JPEG 11
# 28.3 dB.
LEVEL_CODECS: dict[str, dict[str, Any]] = {
    "c23": {"codec": "jpeg", "quality": 60, "stands_for": "H.264 CRF 23"},
    "c40": {"codec": "jpeg", "quality": 11, "stands_for": "H.264 CRF 40"},
}


def describe_level(level: str) -> str:
    """What a level of the generated dataset is, in words (for logs and table notes)."""
    if level == RAW:
        return "raw: the rendered frames, lossless (FFV1)"
    codec = LEVEL_CODECS[level]
    return (
        f"{level}: every raw frame through {codec['codec'].upper()} at quality "
        f"{codec['quality']}, stored losslessly (a stand-in for FF++'s {codec['stands_for']})"
    )


def marker_levels(summary: dict[str, Any]) -> list[str]:
    """The levels a completion marker says the dataset holds (`raw` only for a dataset
    generated before the levels existed)."""
    return list(summary.get("compressions") or [RAW])


class GeneratedDataset:
    """A complete generated dataset in `root` (its own splits in `root/splits`)."""

    name = "generated"

    def __init__(self, root: str, splits_dir: str | None = None):
        if splits_dir:
            raise ValueError(
                f"--splits_dir={splits_dir!r} does not apply to the generated dataset: it "
                f"has its own split files in {os.path.join(root, SPLITS_DIR)}."
            )
        self.root = root
        self.splits_dir = os.path.join(root, SPLITS_DIR)

    @property
    def marker(self) -> str:
        return os.path.join(self.root, MARKER)

    def _summary(self) -> dict[str, Any]:
        summary = read_json(self.marker) if os.path.isfile(self.marker) else None
        if summary is None:
            raise FileNotFoundError(
                f"{self.root!r} holds no complete generated dataset (no {MARKER}): run "
                "python -m experiments.make_synthetic_ffpp --workdir=WORKDIR first, or pass "
                "--dataset_root with the folder it wrote."
            )
        return summary

    def levels(self) -> list[str]:
        """The compression levels the complete dataset holds.

        Raises:
          FileNotFoundError: `root` holds no complete generated dataset.
        """
        return marker_levels(self._summary())

    def list_videos(self, compression: str, methods: Sequence[str] | None) -> DatasetListing:
        """The videos of the dataset at one level with their splits (see
        `ffpp.list_ffpp_videos`).

        Raises:
          FileNotFoundError: `root` holds no complete generated dataset.
          ValueError: an unknown level, or one this dataset was generated without.
        """
        check_compression(compression)
        summary = self._summary()
        levels = marker_levels(summary)
        if compression not in levels:
            wanted = [c for c in COMPRESSIONS if c in levels or c == compression]
            raise ValueError(
                f"The generated dataset in {self.root!r} holds {', '.join(levels)} only, not "
                f"{compression}: run python -m experiments.make_synthetic_ffpp with "
                f"--out={self.root} --config.synthetic.compressions={','.join(wanted)} "
                "(and the settings it was made with) to add it; the videos already there "
                "are kept."
            )
        recorded = (summary.get("levels") or {}).get(compression)
        codec = LEVEL_CODECS.get(compression)
        if recorded is not None and {k: recorded.get(k) for k in codec} != codec:
            raise ValueError(
                f"The {compression} videos of the generated dataset in {self.root!r} were "
                f"made with {recorded}, not {codec} as this version makes them: generate "
                "the dataset again into a new folder."
            )
        return list_ffpp_videos(self.root, self.splits_dir, compression, methods)
