"""The generated-dataset adapter: the miniature FF++ that `data_prep.synthetic` writes.

The generator lays its videos out as FaceForensics++ does (see `ffpp`), at the `raw`
level only, and writes beside them its own split files in the official format and
two JSON files:

    <root>/splits/{train,val,test}.json
    <root>/.synthetic_settings.json      written first: what a partial run was making
    <root>/synthetic.json                written last: the dataset is complete

The adapter lists a root only once `synthetic.json` is there, with the splits of
`<root>/splits`, so a half-generated dataset is never taken for a complete one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from data_prep.datasets.base import DatasetListing
from data_prep.datasets.ffpp import list_ffpp_videos

MARKER = "synthetic.json"  # written last: the dataset is complete
SETTINGS = ".synthetic_settings.json"  # written first: what a partial run was making
SPLITS_DIR = "splits"


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

    def list_videos(self, compression: str, methods: Sequence[str] | None) -> DatasetListing:
        """The videos of the dataset with their splits (see `ffpp.list_ffpp_videos`).

        Raises:
          FileNotFoundError: `root` holds no complete generated dataset.
        """
        if not os.path.isfile(self.marker):
            raise FileNotFoundError(
                f"{self.root!r} holds no complete generated dataset (no {MARKER}): run "
                "python -m experiments.make_synthetic_ffpp --workdir=WORKDIR first, or pass "
                "--dataset_root with the folder it wrote."
            )
        return list_ffpp_videos(self.root, self.splits_dir, compression, methods)
