"""The Celeb-DF (v2) adapter (Li et al., CVPR 2020), for cross-dataset evaluation.

Celeb-DF v2 as it is downloaded:

    <root>/Celeb-real/id0_0000.mp4           real (celebrity interviews)
    <root>/YouTube-real/00000.mp4            real (other YouTube videos)
    <root>/Celeb-synthesis/id0_id1_0000.mp4  fake
    <root>/List_of_testing_videos.txt        the official test list

Reals are listed with source `original` (label 0), fakes with the method `CelebDF`
(label 1), each video by its file name without extension. Only media files
(`data_prep.media`) directly in the three folders are videos; anything else there is
`ignored`.

The test list holds lines `<label> <relative path>`, e.g. `1 YouTube-real/00170.mp4`,
where (Celeb-DF's own convention, the opposite of this project's) **1 means real and
0 fake**. Each line is cross-checked with the folder of its path: a disagreement is a
`label_mismatch` problem and the folder's label is kept; a listed file that is not on
disk is a `missing_video` problem; a line that does not parse is a `split_file`
problem naming the line.

Splits: Celeb-DF defines only the test set. The listed videos are `test`; the others
have no official split and are unassigned (`split=None`, skipped by the face stage)
unless `unlisted_split` names a split for them. The listing's `split_policy` says
which. A missing folder or test list is a problem, not an error: what is there is
listed (without the list, every video is unassigned).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from data_prep.datasets.base import DatasetListing, DatasetProblem, VideoEntry, label_of
from data_prep.datasets.common import (
    check_root,
    finish_listing,
    is_hidden,
    reject_splits_dir,
    select_methods,
)
from data_prep.media import is_media
from data_prep.methods import ORIGINAL, SPLITS

METHOD = "CelebDF"  # the source of Celeb-DF's fakes
TEST_LIST = "List_of_testing_videos.txt"
# folder -> source; the test list's labels: 1 real, 0 fake.
FOLDERS: dict[str, str] = {
    "Celeb-real": ORIGINAL,
    "YouTube-real": ORIGINAL,
    "Celeb-synthesis": METHOD,
}
_LIST_LABELS = {"1": ORIGINAL, "0": METHOD}


def _scan_folder(
    root: str, folder: str, source: str
) -> tuple[list[VideoEntry], list[DatasetProblem], list[str]]:
    """The videos of one folder (no split yet), its problems, the non-media files."""
    path = os.path.join(root, folder)
    if not os.path.isdir(path):
        kind = "real videos" if source == ORIGINAL else "fake videos"
        return (
            [],
            [
                DatasetProblem(
                    "missing_folder",
                    source,
                    path,
                    f"No folder {path} ({kind} of Celeb-DF): download it, or the listing "
                    "goes on without it.",
                )
            ],
            [],
        )
    videos, ignored = [], []
    for name in sorted(os.listdir(path)):
        file = os.path.join(path, name)
        if is_hidden(name) or not os.path.isfile(file):
            continue
        if not is_media(name):
            ignored.append(os.path.join(folder, name))
            continue
        videos.append(
            VideoEntry(
                video=os.path.splitext(name)[0],
                source=source,
                label=label_of(source),
                split=None,
                path=file,
            )
        )
    problems = []
    if not videos:
        problems.append(
            DatasetProblem("no_videos", source, path, f"The folder {path} holds no video.")
        )
    return videos, problems, ignored


def read_test_list(
    path: str, root: str, present_folders: Sequence[str]
) -> tuple[set[str], list[DatasetProblem]]:
    """The test videos of `List_of_testing_videos.txt` (paths relative to `root`,
    normalised) and what is wrong with its lines.

    Lines of folders not in `present_folders` are skipped silently (their folder's
    absence or exclusion is reported elsewhere).
    """
    if not os.path.isfile(path):
        return set(), [
            DatasetProblem(
                "split_file",
                "",
                path,
                f"No test list {path}: restore it from the Celeb-DF download; without it no "
                "video has a split.",
            )
        ]
    listed, problems = set(), []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[0] not in _LIST_LABELS:
                problems.append(
                    DatasetProblem(
                        "split_file",
                        "",
                        path,
                        f"{path} line {number}: {line.strip()!r} is not '<1|0> <relative "
                        "path>' (1 real, 0 fake): line skipped.",
                    )
                )
                continue
            relative = os.path.normpath(fields[1])
            folder = relative.split(os.sep, 1)[0]
            if folder not in FOLDERS:
                problems.append(
                    DatasetProblem(
                        "split_file",
                        "",
                        path,
                        f"{path} line {number}: {fields[1]!r} is in none of "
                        f"{', '.join(FOLDERS)}: line skipped.",
                    )
                )
                continue
            if folder not in present_folders:
                continue
            source = FOLDERS[folder]
            said = _LIST_LABELS[fields[0]]
            if said != source:
                problems.append(
                    DatasetProblem(
                        "label_mismatch",
                        source,
                        os.path.join(root, relative),
                        f"{path} line {number} labels {fields[1]} "
                        f"{'real' if said == ORIGINAL else 'fake'} ({fields[0]}; 1 real, 0 "
                        f"fake) but it lies in {folder}: the folder's label "
                        f"({'real' if source == ORIGINAL else 'fake'}) is kept.",
                    )
                )
            if not os.path.isfile(os.path.join(root, relative)):
                problems.append(
                    DatasetProblem(
                        "missing_video",
                        source,
                        os.path.join(root, relative),
                        f"{path} line {number} lists {fields[1]}, which is not in "
                        f"{root}: download it again.",
                    )
                )
                continue
            listed.add(relative)
    return listed, problems


class CelebDFDataset:
    """Celeb-DF v2 in `root`: its test list as the `test` split (see the module doc)."""

    name = "celebdf"

    def __init__(self, root: str, splits_dir: str | None = None, unlisted_split: str | None = None):
        reject_splits_dir(self.name, splits_dir, f"its test list is {TEST_LIST} in the root")
        if unlisted_split is not None and unlisted_split not in SPLITS:
            raise ValueError(
                f"unlisted_split must be None or one of {', '.join(SPLITS)}, got "
                f"{unlisted_split!r}."
            )
        self.root = root
        self.splits_dir: str | None = None
        self.unlisted_split = unlisted_split

    def list_videos(self, compression: str, methods: Sequence[str] | None) -> DatasetListing:
        """The reals and (if selected) the fakes, the listed ones in `test`.

        Args:
          compression: recorded as given (Celeb-DF comes in one encoding).
          methods: None or any request naming `CelebDF` lists the fakes; empty (or
            only FF++ methods, which select every method) as `common.select_methods`.

        Raises:
          FileNotFoundError: `root` is not a folder. ValueError: an unknown method.
        """
        check_root(
            self.root,
            "Celeb-DF v2",
            f"holding Celeb-real/, YouTube-real/, Celeb-synthesis/ and {TEST_LIST}",
        )
        chosen = select_methods("Celeb-DF", (METHOD,), methods)
        videos, problems, ignored = [], [], []
        present = []
        for folder, source in FOLDERS.items():
            if source != ORIGINAL and source not in chosen:
                if os.path.isdir(os.path.join(self.root, folder)):
                    ignored.append(folder)
                continue
            found, trouble, skipped = _scan_folder(self.root, folder, source)
            videos.extend(found)
            problems.extend(trouble)
            ignored.extend(skipped)
            if os.path.isdir(os.path.join(self.root, folder)):
                present.append(folder)
        listed, trouble = read_test_list(os.path.join(self.root, TEST_LIST), self.root, present)
        problems.extend(trouble)
        videos = [
            VideoEntry(
                video=v.video,
                source=v.source,
                label=v.label,
                split="test"
                if os.path.relpath(v.path, self.root) in listed
                else self.unlisted_split,
                path=v.path,
            )
            for v in videos
        ]
        rest = (
            f"the others in {self.unlisted_split}"
            if self.unlisted_split
            else "the others in no split (Celeb-DF has no official train/val split)"
        )
        return finish_listing(
            self.root,
            compression,
            chosen,
            videos,
            problems,
            ignored,
            f"the videos of {TEST_LIST} in test, {rest}",
        )
