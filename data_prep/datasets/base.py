"""What a dataset adapter is: a lister of videos with their source, label and split.

An adapter turns a dataset as it lies on disk (FaceForensics++ as its download script
writes it, the generated miniature FF++, later Celeb-DF, DFDC or a folder of files)
into `VideoEntry`s: video id, source (`original` or the manipulation method), label
(0 real, 1 fake), split, path, and the path of the manipulation mask where the
dataset has masks. Problems (a missing folder, an unusable split file) are reported
in the listing, not raised, so the videos that are there can still be processed. The
face stage (`face_stage.prepare_faces`) reads nothing but such a listing.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from typing import Protocol

from data_prep.methods import ORIGINAL


@dataclasses.dataclass(frozen=True)
class VideoEntry:
    """One video of a dataset."""

    video: str  # id, e.g. "000" (an FF++ original) or "000_003" (target_source)
    source: str  # "original" or the manipulation method
    label: int  # 0 real, 1 fake
    split: str | None  # "train", "val", "test"; None: in no split
    path: str
    mask_path: str | None = None  # the manipulation mask video, where the dataset has one

    @property
    def key(self) -> str:
        """`source/video`: unique within a dataset."""
        return f"{self.source}/{self.video}"


def label_of(source: str) -> int:
    """0 for `original`, 1 for any manipulation method."""
    return 0 if source == ORIGINAL else 1


@dataclasses.dataclass(frozen=True)
class DatasetProblem:
    """Something a dataset lacks. `kind`: missing_method, missing_compression,
    no_videos, duplicate_video, split_file (FF++); missing_folder, missing_video,
    bad_label, label_mismatch, bad_split, metadata_file (Celeb-DF, DFDC, folder);
    `method` is "" where none applies."""

    kind: str
    method: str
    path: str
    message: str

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class DatasetListing:
    """What an adapter found for one request.

    `methods` are the manipulation methods listed (as requested, or every one found);
    `videos` every video found, those in no split with `split=None`; `ignored` the
    folders present but not requested and the files that are not media (relative to
    `root`); `split_policy` how the adapter assigned splits where the dataset has no
    complete official split ("" for FF++: its official splits).
    """

    root: str
    compression: str
    methods: tuple[str, ...]
    videos: list[VideoEntry]
    problems: list[DatasetProblem]
    ignored: list[str]
    split_policy: str = ""

    def counts(self) -> dict[str, int]:
        """Videos found per source (`original` or method)."""
        return dict(collections.Counter(v.source for v in self.videos))

    def assigned(self) -> list[VideoEntry]:
        """The videos with a split, in listing order."""
        return [v for v in self.videos if v.split is not None]

    def unassigned(self) -> list[VideoEntry]:
        """The videos in no split."""
        return [v for v in self.videos if v.split is None]


class VideoDataset(Protocol):
    """A dataset adapter. `root` and `splits_dir` are recorded in the faces manifest."""

    name: str
    root: str
    splits_dir: str | None

    def list_videos(self, compression: str, methods: Sequence[str] | None) -> DatasetListing:
        """Lists the originals and the fakes of `methods` (None: every method found)
        at one compression level.

        Raises:
          FileNotFoundError: the dataset root (or its split folder) is not there.
          ValueError: the request cannot be met (unknown compression or method).
        """
        ...
