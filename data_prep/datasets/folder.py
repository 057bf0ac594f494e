"""The generic folder adapter: any set of real and fake videos or still images.

Two layouts. Folders:

    <root>/real/...                  real (source `original`, label 0), split test
    <root>/fake/...                  fake (method `fake`, label 1), split test
    <root>/fake/<method>/...         fake of the method <method>
    <root>/<split>/real/...          the same within a split: train, val or test
    <root>/<split>/fake/...

Files are found at any depth below `real/` and `fake/`. Or a CSV file, passed as the
root itself:

    path,label[,split]               a header row, then one row per file
    clips/a.mp4,real,train           label: real/fake or 0/1 (0 real, 1 fake, as in
    clips/b.png,1,                   this project); split empty or absent: test

with paths relative to the CSV's folder; every CSV fake has the method `fake`.

Videos and still images (`data_prep.media`) alike are listed; an image is a one-frame
video. Files that are not media (by extension) are `ignored`, not problems. A video's
id is its path (below `real/`, `fake/` or `fake/<method>/`, or as the CSV writes it)
without extension, folders joined by "__"; two files with the same id in one source
(`a.mp4` and `a.png`, or the same name in two splits) are a `duplicate_video` problem
and the first is kept. Missing folders, bad labels and missing files are problems,
the rest is listed. Where the layout gives no split, a file is in `test`; the
listing's `split_policy` says so.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence

from data_prep.datasets.base import DatasetListing, DatasetProblem, VideoEntry, label_of
from data_prep.datasets.common import (
    check_root,
    finish_listing,
    is_hidden,
    reject_splits_dir,
    select_methods,
    video_id,
)
from data_prep.media import is_media
from data_prep.methods import ORIGINAL, SPLITS

REAL, FAKE = "real", "fake"
METHOD = "fake"  # the method of fakes not in a method sub-folder
DEFAULT_SPLIT = "test"  # where the layout gives no split
_CSV_LABELS = {"real": ORIGINAL, "0": ORIGINAL, "fake": METHOD, "1": METHOD}
POLICY = f"files outside a train/val/test folder (or with no split in the CSV) in {DEFAULT_SPLIT}"


def _walk_files(folder: str) -> Iterator[str]:
    """The non-hidden files below `folder`, at any depth, in a stable order."""
    for here, subfolders, files in os.walk(folder):
        subfolders[:] = sorted(d for d in subfolders if not is_hidden(d))
        for name in sorted(files):
            if not is_hidden(name):
                yield os.path.join(here, name)


def _scan_class(root: str, folder: str, split: str | None) -> tuple[list[VideoEntry], list[str]]:
    """The media files of a `real/` or `fake/` folder and the other files (relative)."""
    fake = os.path.basename(folder) == FAKE
    videos, ignored = [], []
    for path in _walk_files(folder):
        if not is_media(path):
            ignored.append(os.path.relpath(path, root))
            continue
        relative = os.path.relpath(path, folder)
        source, below = ORIGINAL, relative
        if fake:
            method, _, rest = relative.partition(os.sep)
            source, below = (method, rest) if rest else (METHOD, relative)
        videos.append(
            VideoEntry(
                video=video_id(below),
                source=source,
                label=label_of(source),
                split=split,
                path=path,
            )
        )
    return videos, ignored


def scan_folders(
    root: str, default_split: str | None = DEFAULT_SPLIT
) -> tuple[list[VideoEntry], list[DatasetProblem], list[str]]:
    """Every video of the folder layout, the missing folders, the ignored files; files
    outside a split folder get `default_split`."""
    groups = [(root, default_split)] + [(os.path.join(root, s), s) for s in SPLITS]
    videos, problems, ignored = [], [], []
    used = False
    for base, split in groups:
        present = [c for c in (REAL, FAKE) if os.path.isdir(os.path.join(base, c))]
        if not present:
            continue
        used = True
        for name in (REAL, FAKE):
            folder = os.path.join(base, name)
            if name not in present:
                problems.append(
                    DatasetProblem(
                        "missing_folder",
                        ORIGINAL if name == REAL else METHOD,
                        folder,
                        f"No folder {folder} beside {os.path.join(base, present[0])}: "
                        f"add the {name} files there, or the listing goes on without them.",
                    )
                )
                continue
            found, skipped = _scan_class(root, folder, split)
            videos.extend(found)
            ignored.extend(skipped)
            if not found:
                problems.append(
                    DatasetProblem(
                        "no_videos",
                        ORIGINAL if name == REAL else METHOD,
                        folder,
                        f"The folder {folder} holds no video or image.",
                    )
                )
    if not used:
        problems.append(
            DatasetProblem(
                "missing_folder",
                "",
                root,
                f"{root} holds neither real/ and fake/ nor <split>/real/ and <split>/fake/ "
                f"(split: {', '.join(SPLITS)}): lay the files out so, or pass a CSV file "
                "path,label[,split] as --dataset_root.",
            )
        )
    return videos, problems, ignored


def scan_csv(
    path: str, default_split: str | None = DEFAULT_SPLIT
) -> tuple[list[VideoEntry], list[DatasetProblem], list[str]]:
    """The rows of a `path,label[,split]` CSV, its problems, the non-media files; rows
    with no split get `default_split`."""
    base = os.path.dirname(os.path.abspath(path))
    videos, problems, ignored = [], [], []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = [h.strip().lower() for h in next(reader, [])]
            if "path" not in header or "label" not in header:
                return (
                    [],
                    [
                        DatasetProblem(
                            "metadata_file",
                            "",
                            path,
                            f"{path} has the header {','.join(header) or '(none)'}: it needs a "
                            "header row path,label[,split]; nothing is listed.",
                        )
                    ],
                    [],
                )
            where = {
                name: header.index(name) for name in ("path", "label", "split") if name in header
            }
            for number, row in enumerate(reader, start=2):
                if not any(cell.strip() for cell in row):
                    continue
                cells = {k: row[i].strip() if i < len(row) else "" for k, i in where.items()}
                relative, label = cells["path"], cells["label"]
                source = _CSV_LABELS.get(label.lower())
                if not relative or source is None:
                    problems.append(
                        DatasetProblem(
                            "bad_label",
                            "",
                            path,
                            f"{path} line {number}: path {relative!r} with label {label!r}; "
                            "a row needs a path and a label real, fake, 0 (real) or 1 "
                            "(fake): row skipped.",
                        )
                    )
                    continue
                file = os.path.normpath(os.path.join(base, relative))
                if not is_media(file):
                    ignored.append(relative)
                    continue
                if not os.path.isfile(file):
                    problems.append(
                        DatasetProblem(
                            "missing_video",
                            source,
                            file,
                            f"{path} line {number} lists {relative}, which is not in {base}.",
                        )
                    )
                    continue
                split = cells.get("split") or default_split
                if split is not None and split not in SPLITS:
                    problems.append(
                        DatasetProblem(
                            "bad_split",
                            source,
                            file,
                            f"{path} line {number}: split {split!r} is not one of "
                            f"{', '.join(SPLITS)} (or empty for {DEFAULT_SPLIT}): the file "
                            "is in no split.",
                        )
                    )
                    split = None
                videos.append(
                    VideoEntry(
                        video=video_id(relative),
                        source=source,
                        label=label_of(source),
                        split=split,
                        path=file,
                    )
                )
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        problems.append(
            DatasetProblem(
                "metadata_file",
                "",
                path,
                f"{path} cannot be read as CSV ({type(e).__name__}: {e}): the rows after "
                "the error are skipped.",
            )
        )
    return videos, problems, ignored


class FolderDataset:
    """Real and fake files in `real/` and `fake/` folders, or listed by a CSV file."""

    name = "folder"

    def __init__(self, root: str, splits_dir: str | None = None):
        reject_splits_dir(
            self.name, splits_dir, "splits are its train/val/test folders or the CSV's column"
        )
        self.root = root
        self.splits_dir: str | None = None

    def list_videos(self, compression: str, methods: Sequence[str] | None) -> DatasetListing:
        """The reals and the fakes of the selected methods, with their splits.

        Args:
          compression: recorded as given (the files are read as they are).
          methods: as `common.select_methods` over the methods found (`fake` and the
            sub-folders of `fake/`).

        Raises:
          FileNotFoundError: `root` is neither a folder nor a file. ValueError: an
            unknown method.
        """
        check_root(
            self.root,
            "generic",
            "holding real/ and fake/ or <split>/real/ and <split>/fake/, or a CSV file "
            "path,label[,split]",
            allow_file=True,
        )
        if os.path.isfile(self.root):
            videos, problems, ignored = scan_csv(self.root)
        else:
            videos, problems, ignored = scan_folders(self.root)
        found = {v.source for v in videos if v.source != ORIGINAL}
        chosen = select_methods("folder", sorted(found), methods)
        videos = [v for v in videos if v.source == ORIGINAL or v.source in chosen]
        return finish_listing(self.root, compression, chosen, videos, problems, ignored, POLICY)
