"""The face-crop adapter: datasets that arrive as face crops rather than videos.

Many public deepfake sets are distributed as face dumps (DFDC and Celeb-DF crops,
DeepfakeBench's preprocessed frames, Kaggle crop sets). Each crop is listed as a
one-frame video of its own id; the face stage takes it as given (resized to the
crop size, no face detection: `face_settings.GIVEN`). Layouts:

    <root>/metadata.csv              the face-dump layout (DFDC crops on Kaggle):
    <root>/<any folder>/<name>.jpg   one row per crop, columns
        videoname,label[,original][,split][,method]
        label REAL/FAKE (any case) or 0/1; `original`: for a fake, the real it was
        made from; `videoname` names the crop by its stem (`abc.mp4` -> `abc.*`),
        found at any depth below the root
    <root>/[<split>/]real/...        the folder adapter's layouts (`datasets.folder`),
    <root>/[<split>/]fake/<method>/  with images; or a CSV path,label[,split] as root

Splits: the dataset's own where it gives one; otherwise seeded and by source: a
fake goes to the split of its `original`, so no scene or person crosses splits
through a pair, and a real decides its own (`split_of`). The ratios and the seed are
in the listing's `split_policy` (the faces manifest records it).

Problems are reported and the rest is listed: a label that is neither real nor fake
(`bad_label`), a row whose file is missing (`missing_video`), a file no row lists
(`unlisted_file`; not listed), a fake whose original is not among the reals
(`missing_original`; kept, split by its own id), a split that is not train, val or
test (`bad_split`), an unreadable metadata file (`metadata_file`). Images that do
not decode, are cut short or are smaller than the crop size fail in the face stage,
each counted by kind in its manifest.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
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
from data_prep.datasets.folder import METHOD, scan_csv, scan_folders
from data_prep.media import media_kind
from data_prep.methods import ORIGINAL, SPLITS

METADATA = "metadata.csv"
NAME_COLUMNS = ("videoname", "filename", "file", "name")  # the crop's name, first found
_LABELS = {"real": ORIGINAL, "0": ORIGINAL, "fake": METHOD, "1": METHOD}
DEFAULT_RATIOS = (0.7, 0.15, 0.15)  # train, val, test


def split_of(group: str, seed: int, ratios: Sequence[float] = DEFAULT_RATIOS) -> str:
    """The split of a source group: a hash of (seed, group) placed on the ratios.

    The same group always lands in the same split, whatever else the dataset holds,
    so adding crops never moves the ones already split.
    """
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2.0**64
    edge = 0.0
    for split, ratio in zip(SPLITS, ratios, strict=True):
        edge += ratio / sum(ratios)
        if position < edge:
            return split
    return SPLITS[-1]


def _stem(name: str) -> str:
    return os.path.splitext(os.path.basename(name.strip()))[0]


def _image_files(root: str) -> tuple[dict[str, str], list[DatasetProblem]]:
    """{stem: path} of the images below `root`; a stem found twice is a problem."""
    found: dict[str, str] = {}
    problems = []
    for here, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not is_hidden(d))
        for name in sorted(files):
            if is_hidden(name) or media_kind(name) != "image":
                continue
            path = os.path.join(here, name)
            stem = _stem(name)
            if stem in found:
                problems.append(
                    DatasetProblem(
                        "duplicate_video",
                        "",
                        path,
                        f"Two images named {stem}: {found[stem]} and {path}; keeping the first.",
                    )
                )
                continue
            found[stem] = path
    return found, problems


@dataclasses.dataclass(frozen=True)
class _Row:
    video: str
    source: str
    original: str
    split: str | None
    path: str


def _read_rows(
    metadata: str, images: dict[str, str]
) -> tuple[list[_Row], list[DatasetProblem], set[str]]:
    """The usable rows of metadata.csv, the problems, and the stems it lists."""
    problems: list[DatasetProblem] = []
    rows: list[_Row] = []
    listed: set[str] = set()
    try:
        with open(metadata, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = {c.strip().lower(): c for c in reader.fieldnames or []}
            name_column = next((columns[c] for c in NAME_COLUMNS if c in columns), None)
            if name_column is None or "label" not in columns:
                return (
                    [],
                    [
                        DatasetProblem(
                            "metadata_file",
                            "",
                            metadata,
                            f"{metadata} has the columns {', '.join(columns) or '(none)'}: "
                            f"it needs a crop name ({' or '.join(NAME_COLUMNS)}) and a label; "
                            "nothing is listed.",
                        )
                    ],
                    set(),
                )

            def cell(row: dict[str, str], name: str) -> str:
                return (row.get(columns[name]) or "").strip() if name in columns else ""

            for number, row in enumerate(reader, start=2):
                stem = _stem(row.get(name_column) or "")
                label = cell(row, "label").lower()
                source = _LABELS.get(label)
                listed.add(stem)  # a file with a bad row is that row's problem only
                if not stem or source is None:
                    problems.append(
                        DatasetProblem(
                            "bad_label",
                            "",
                            metadata,
                            f"{metadata} line {number}: crop {stem!r} with label {label!r}; a "
                            "row needs a name and a label real, fake, 0 or 1: row skipped.",
                        )
                    )
                    continue
                if source != ORIGINAL:
                    source = cell(row, "method") or METHOD
                if stem not in images:
                    problems.append(
                        DatasetProblem(
                            "missing_video",
                            source,
                            metadata,
                            f"{metadata} line {number} lists {stem}, but no image of that "
                            "name is below the dataset folder: row skipped.",
                        )
                    )
                    continue
                split = cell(row, "split").lower() or None
                if split is not None and split not in SPLITS:
                    problems.append(
                        DatasetProblem(
                            "bad_split",
                            source,
                            images[stem],
                            f"{metadata} line {number}: split {split!r} is not one of "
                            f"{', '.join(SPLITS)} (or empty): split by source instead.",
                        )
                    )
                    split = None
                original = _stem(cell(row, "original")) if source != ORIGINAL else ""
                rows.append(_Row(stem, source, original, split, images[stem]))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        problems.append(
            DatasetProblem(
                "metadata_file",
                "",
                metadata,
                f"{metadata} cannot be read as CSV ({type(e).__name__}: {e}): the rows "
                "after the error are skipped.",
            )
        )
    return rows, problems, listed


class CropsDataset:
    """Face crops: a face dump with metadata.csv, or real/ and fake/ folders of images."""

    name = "crops"

    def __init__(
        self,
        root: str,
        splits_dir: str | None = None,
        seed: int = 0,
        ratios: Sequence[float] = DEFAULT_RATIOS,
    ):
        reject_splits_dir(
            self.name, splits_dir, "splits are its own, or drawn by source with a seed"
        )
        if len(ratios) != len(SPLITS) or min(ratios) < 0 or sum(ratios) <= 0:
            raise ValueError(f"Split ratios must be three non-negative numbers, got {ratios}.")
        self.root = root
        self.splits_dir: str | None = None
        self.seed = seed
        self.ratios = tuple(float(r) for r in ratios)

    @property
    def split_policy(self) -> str:
        train, val, test = self.ratios
        return (
            f"the dataset's own splits where given; otherwise by source with seed "
            f"{self.seed}, train {train:g} / val {val:g} / test {test:g} of the sources (a "
            "fake in the split of its original; a fake without one by its own id)"
        )

    def _face_dump(self) -> tuple[list[VideoEntry], list[DatasetProblem], list[str]]:
        metadata = os.path.join(self.root, METADATA)
        images, problems = _image_files(self.root)
        rows, row_problems, listed = _read_rows(metadata, images)
        problems += row_problems
        unlisted = sorted(set(images) - listed)
        problems += [
            DatasetProblem(
                "unlisted_file",
                "",
                images[stem],
                f"{images[stem]} is in no row of {metadata}: not listed (add a row with its "
                "label to use it).",
            )
            for stem in unlisted
        ]
        reals = {row.video: row for row in rows if row.source == ORIGINAL}
        videos = []
        for row in rows:
            split, group = row.split, row.video
            if row.source != ORIGINAL:
                if row.original in reals:
                    group = row.original
                    split = split or reals[row.original].split
                else:
                    problems.append(
                        DatasetProblem(
                            "missing_original",
                            row.source,
                            row.path,
                            f"Fake {row.video}: its original {row.original or '(none given)'} "
                            "is not among the real crops; kept, split by its own id.",
                        )
                    )
            videos.append(
                VideoEntry(
                    video=row.video,
                    source=row.source,
                    label=label_of(row.source),
                    split=split or split_of(group, self.seed, self.ratios),
                    path=row.path,
                )
            )
        return videos, problems, []

    def _folders(self) -> tuple[list[VideoEntry], list[DatasetProblem], list[str]]:
        if os.path.isfile(self.root):
            videos, problems, ignored = scan_csv(self.root, default_split=None)
        else:
            videos, problems, ignored = scan_folders(self.root, default_split=None)
        drawn = [
            dataclasses.replace(v, split=v.split or split_of(v.video, self.seed, self.ratios))
            for v in videos
        ]
        return drawn, problems, ignored

    def list_videos(self, compression: str, methods: Sequence[str] | None) -> DatasetListing:
        """The real crops and the fake crops of the selected methods, with their splits.

        Args:
          compression: recorded as given (the files are read as they are).
          methods: as `common.select_methods` over the methods found.

        Raises:
          FileNotFoundError: `root` is neither a folder nor a file. ValueError: an
            unknown method.
        """
        check_root(
            self.root,
            "face-crop",
            f"holding {METADATA} and the crops, or real/ and fake/ (optionally under "
            "train/, val/, test/), or a CSV file path,label[,split]",
            allow_file=True,
        )
        if os.path.isfile(os.path.join(self.root, METADATA)):
            videos, problems, ignored = self._face_dump()
        else:
            videos, problems, ignored = self._folders()
        found = {v.source for v in videos if v.source != ORIGINAL}
        chosen = select_methods(self.name, sorted(found), methods)
        videos = [v for v in videos if v.source == ORIGINAL or v.source in chosen]
        return finish_listing(
            self.root, compression, chosen, videos, problems, ignored, self.split_policy
        )
