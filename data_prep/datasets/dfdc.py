"""The DFDC adapter (Deepfake Detection Challenge, Dolhansky et al. 2020).

DFDC comes as parts, each a folder of videos with a `metadata.json`:

    <root>/dfdc_train_part_0/metadata.json
    <root>/dfdc_train_part_0/aaqaifqrwn.mp4
    ...

    metadata.json: {"aaqaifqrwn.mp4": {"label": "FAKE", "split": "train",
                                        "original": "vudstovrck.mp4"}, ...}

Every folder under `root` (the root included) that holds a `metadata.json` is a part.
Reals (`label` REAL, any case) are listed with source `original` (label 0), fakes
(FAKE) with the method `DFDC` (label 1), each by its file name without extension
(DFDC's names are unique across parts; a repeated one is a `duplicate_video`
problem). `original` is not used.

Problems are reported, not raised, and the rest is listed: a metadata file that does
not parse (`metadata_file`, naming it; its folder is skipped), an entry whose label
is neither REAL nor FAKE (`bad_label`, naming the video; skipped), a listed video not
on disk (`missing_video`), a split that is not train, val or test (`bad_split`; the
video is unassigned). Files of a part that its metadata does not list are `ignored`.

Splits: DFDC's own `split` field where an entry has one, else `test` (the listing's
`split_policy` says so).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from data_prep.datasets.base import DatasetListing, DatasetProblem, VideoEntry, label_of
from data_prep.datasets.common import (
    check_root,
    finish_listing,
    is_hidden,
    reject_splits_dir,
    select_methods,
)
from data_prep.methods import ORIGINAL, SPLITS

METHOD = "DFDC"  # the source of DFDC's fakes
METADATA = "metadata.json"
DEFAULT_SPLIT = "test"  # for entries without a `split` field
_LABELS = {"real": ORIGINAL, "fake": METHOD}


def metadata_folders(root: str) -> list[str]:
    """The folders under `root` (itself included) holding a metadata.json, sorted."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not is_hidden(d))
        if METADATA in files:
            found.append(folder)
    return sorted(found)


def _read_metadata(path: str) -> tuple[dict[str, Any] | None, str | None]:
    """The parsed metadata, or None and why it cannot be used."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"{type(e).__name__}: {e}"
    if not isinstance(data, dict):
        return None, f"expected a JSON object of video name -> entry, found {type(data).__name__}"
    return data, None


def _scan_part(
    root: str, folder: str, chosen: Sequence[str]
) -> tuple[list[VideoEntry], list[DatasetProblem], list[str]]:
    """The videos one part lists, its problems, and its unlisted files."""
    path = os.path.join(folder, METADATA)
    metadata, error = _read_metadata(path)
    if metadata is None:
        return (
            [],
            [
                DatasetProblem(
                    "metadata_file",
                    "",
                    path,
                    f"The DFDC metadata file {path} cannot be used ({error}): the videos of "
                    f"{folder} are skipped; restore the file from the download.",
                )
            ],
            [],
        )
    videos, problems = [], []
    for name, entry in sorted(metadata.items()):
        file = os.path.join(folder, name)
        label = entry.get("label") if isinstance(entry, dict) else None
        source = _LABELS.get(label.lower()) if isinstance(label, str) else None
        if source is None:
            problems.append(
                DatasetProblem(
                    "bad_label",
                    "",
                    file,
                    f"{path}: video {name} has label {label!r}, neither REAL nor FAKE: skipped.",
                )
            )
            continue
        if source != ORIGINAL and source not in chosen:
            continue
        if not os.path.isfile(file):
            problems.append(
                DatasetProblem(
                    "missing_video",
                    source,
                    file,
                    f"{path} lists {name}, which is not in {folder}: download that part again.",
                )
            )
            continue
        split = entry.get("split", DEFAULT_SPLIT)
        if split not in SPLITS:
            problems.append(
                DatasetProblem(
                    "bad_split",
                    source,
                    file,
                    f"{path}: video {name} has split {split!r}, not one of "
                    f"{', '.join(SPLITS)}: it is in no split.",
                )
            )
            split = None
        videos.append(
            VideoEntry(
                video=os.path.splitext(name)[0],
                source=source,
                label=label_of(source),
                split=split,
                path=file,
            )
        )
    unlisted = [
        os.path.relpath(os.path.join(folder, name), root)
        for name in sorted(os.listdir(folder))
        if name != METADATA
        and name not in metadata
        and not is_hidden(name)
        and os.path.isfile(os.path.join(folder, name))
    ]
    return videos, problems, unlisted


class DFDCDataset:
    """DFDC parts under `root`, each with its metadata.json (see the module doc)."""

    name = "dfdc"

    def __init__(self, root: str, splits_dir: str | None = None):
        reject_splits_dir(self.name, splits_dir, f"its splits are in each part's {METADATA}")
        self.root = root
        self.splits_dir: str | None = None

    def list_videos(self, compression: str, methods: Sequence[str] | None) -> DatasetListing:
        """The videos of every part with their labels and splits.

        Args:
          compression: recorded as given (DFDC comes in one encoding).
          methods: as `common.select_methods` over the one method `DFDC`.

        Raises:
          FileNotFoundError: `root` is not a folder. ValueError: an unknown method.
        """
        check_root(self.root, "DFDC", f"holding the part folders, each with its {METADATA}")
        chosen = select_methods("DFDC", (METHOD,), methods)
        videos, problems, ignored = [], [], []
        folders = metadata_folders(self.root)
        for folder in folders:
            found, trouble, unlisted = _scan_part(self.root, folder, chosen)
            videos.extend(found)
            problems.extend(trouble)
            ignored.extend(unlisted)
        if not folders:
            problems.append(
                DatasetProblem(
                    "no_videos",
                    "",
                    self.root,
                    f"No {METADATA} under {self.root}: pass the folder holding the DFDC "
                    "parts (dfdc_train_part_0/, ...).",
                )
            )
        return finish_listing(
            self.root,
            compression,
            chosen,
            videos,
            problems,
            ignored,
            f"DFDC's own split field where an entry has one, else {DEFAULT_SPLIT}",
        )
