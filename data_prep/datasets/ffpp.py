"""The FaceForensics++ adapter: its folder layout, its official splits, its masks.

The official download script (Roessler et al., ICCV 2019) lays FF++ out as

    <root>/original_sequences/youtube/{raw,c23,c40}/videos/000.mp4
    <root>/manipulated_sequences/<Method>/{raw,c23,c40}/videos/000_003.mp4
    <root>/manipulated_sequences/<Method>/masks/videos/000_003.mp4

with Method in Deepfakes, Face2Face, FaceSwap, NeuralTextures (the four of the paper,
Khodabakhsh & Busch, BIOSIG 2020) and, in newer downloads, FaceShifter and
DeepFakeDetection. Method names come from the folders: any method folder present can
be requested; with no request every one found is listed. A paper method requested
but absent is reported as a problem (the tables then mark it missing); any other
method requested but absent is refused. A fake's mask is listed where
`masks/videos/` holds a file of the same id. Every non-hidden file in a `videos`
folder is taken as a video, whatever its extension: OpenCV decides what it can read.

Splits come from the official split files (`ffpp_splits`); a video they do not place
(for example DeepFakeDetection's `01_02__walk__ABC`, whose actors the youtube splits
do not list) is listed with `split=None` and skipped by the face stage.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Sequence

from data_prep.datasets.base import DatasetListing, DatasetProblem, VideoEntry, label_of
from data_prep.datasets.ffpp_splits import SplitIndex, load_splits
from data_prep.methods import FFPP_METHODS, ORIGINAL, PAPER_METHODS, order_methods

COMPRESSIONS: tuple[str, ...] = ("raw", "c23", "c40")
ORIGINAL_DIR = os.path.join("original_sequences", "youtube")
MANIPULATED_DIR = "manipulated_sequences"
MASKS = "masks"  # beside the compression levels of a method: masks/videos/<a>_<b>.mp4

# FF++ (and the generated dataset) come with their split files.
SPLIT_POLICY = "the split files (train/val/test.json pairs, FF++ format); videos in none: left out"


def videos_dir(root: str, source: str, compression: str) -> str:
    """The folder holding the videos of one source (`original` or a method) at one level."""
    return os.path.join(_source_dir(root, source), compression, "videos")


def masks_dir(root: str, method: str) -> str:
    """The folder holding the mask videos of one method (all compression levels share it)."""
    return os.path.join(root, MANIPULATED_DIR, method, MASKS, "videos")


def _source_dir(root: str, source: str) -> str:
    if source == ORIGINAL:
        return os.path.join(root, ORIGINAL_DIR)
    return os.path.join(root, MANIPULATED_DIR, source)


def method_folders(root: str) -> list[str]:
    """The method folders under `<root>/manipulated_sequences`, FF++'s order first."""
    manipulated = os.path.join(root, MANIPULATED_DIR)
    if not os.path.isdir(manipulated):
        return []
    return list(
        order_methods(
            name
            for name in os.listdir(manipulated)
            if not name.startswith(".") and os.path.isdir(os.path.join(manipulated, name))
        )
    )


def check_compression(compression: str) -> None:
    """Raises ValueError for a compression level FF++ does not have, saying what to use."""
    if compression not in COMPRESSIONS:
        raise ValueError(
            f"Unknown compression {compression!r}: use one of {', '.join(COMPRESSIONS)}."
        )


def _check_request(root: str, compression: str, methods: Sequence[str]) -> None:
    """Raises for an unknown compression level, a missing root, or a method that is
    neither a paper method nor present, saying what to use."""
    check_compression(compression)
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"ffpp_root={root!r} is not a folder: pass --dataset_root with the folder the "
            "FF++ download script wrote (holding original_sequences/ and "
            "manipulated_sequences/)."
        )
    present = method_folders(root)
    for method in methods:
        if method in present or method in PAPER_METHODS:
            continue
        folder = os.path.join(root, MANIPULATED_DIR, method)
        if method in FFPP_METHODS:
            raise ValueError(
                f"{method} is not one of the paper's methods and {folder} is not there: "
                "download it with the FF++ script or leave it out of --config.faces.methods."
            )
        found = ", ".join(present) or "none"
        raise ValueError(
            f"Unknown method {method!r}: no folder {folder} (method folders found: {found})."
        )


def _available_levels(source_dir: str) -> list[str]:
    if not os.path.isdir(source_dir):
        return []
    return sorted(
        d
        for d in os.listdir(source_dir)
        if d != MASKS and os.path.isdir(os.path.join(source_dir, d, "videos"))
    )


def _files_by_id(folder: str) -> dict[str, list[str]]:
    """Non-hidden files of a folder grouped by id (the name up to its first dot)."""
    by_id: dict[str, list[str]] = collections.defaultdict(list)
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if entry.startswith(".") or not os.path.isfile(path):
            continue  # hidden and partial files, subfolders
        by_id[entry.split(".", 1)[0]].append(path)
    return by_id


def _scan_source(
    root: str, source: str, compression: str
) -> tuple[list[VideoEntry], list[DatasetProblem]]:
    """The videos of one source (split not yet assigned) and what is wrong with it."""
    folder = videos_dir(root, source, compression)
    source_dir = _source_dir(root, source)
    name = "originals" if source == ORIGINAL else source
    if not os.path.isdir(source_dir):
        return [], [
            DatasetProblem(
                "missing_method",
                source,
                source_dir,
                f"No {name} folder at {source_dir}: download it with the FF++ script "
                "or leave it out of --config.faces.methods.",
            )
        ]
    if not os.path.isdir(folder):
        levels = _available_levels(source_dir)
        found = f"found: {', '.join(levels)}" if levels else "no compression level found"
        return [], [
            DatasetProblem(
                "missing_compression",
                source,
                folder,
                f"No {compression} videos of {name} at {folder} ({found}): download that "
                "compression level or choose another with --config.faces.compression.",
            )
        ]
    masks: dict[str, list[str]] = {}
    if source != ORIGINAL and os.path.isdir(masks_dir(root, source)):
        masks = _files_by_id(masks_dir(root, source))
    videos, problems = [], []
    for video, paths in sorted(_files_by_id(folder).items()):
        if len(paths) > 1:
            problems.append(
                DatasetProblem(
                    "duplicate_video",
                    source,
                    paths[0],
                    f"{len(paths)} files for video {video} of {name} "
                    f"({', '.join(os.path.basename(p) for p in paths)}): keeping "
                    f"{os.path.basename(paths[0])}; remove the others.",
                )
            )
        mask = masks.get(video)
        videos.append(
            VideoEntry(
                video=video,
                source=source,
                label=label_of(source),
                split=None,
                path=paths[0],
                mask_path=mask[0] if mask else None,
            )
        )
    if not videos:
        problems.append(
            DatasetProblem("no_videos", source, folder, f"The folder {folder} holds no video.")
        )
    return videos, problems


def scan_layout(root: str, compression: str, methods: Sequence[str] | None) -> DatasetListing:
    """Lists the original videos and the fakes of `methods` at one compression level.

    Splits are not assigned here (every `split` is None): see `FFPPDataset`.

    Args:
      root: the folder the FF++ download script wrote.
      compression: "raw", "c23" or "c40".
      methods: manipulation methods to list; None: every method folder found; empty:
        originals only.

    Returns:
      A DatasetListing. Missing folders are reported as problems, not raised.

    Raises:
      FileNotFoundError: `root` is not a folder.
      ValueError: unknown compression, or a requested method that is neither one of
        the paper's nor present.
    """
    _check_request(root, compression, methods or ())
    present = method_folders(root)
    methods = tuple(present if methods is None else methods)
    videos: list[VideoEntry] = []
    problems: list[DatasetProblem] = []
    for source in (ORIGINAL, *methods):
        found, trouble = _scan_source(root, source, compression)
        videos.extend(found)
        problems.extend(trouble)
    ignored = [os.path.join(MANIPULATED_DIR, m) for m in sorted(present) if m not in methods]
    return DatasetListing(
        root=root,
        compression=compression,
        methods=methods,
        videos=videos,
        problems=problems,
        ignored=ignored,
    )


def assign_splits(listing: DatasetListing, splits: SplitIndex, splits_dir: str) -> DatasetListing:
    """The listing with each video's official split, and the unusable split files as
    `split_file` problems."""
    videos = [
        VideoEntry(
            video=v.video,
            source=v.source,
            label=v.label,
            split=splits.split_of(v.video, v.source),
            path=v.path,
            mask_path=v.mask_path,
        )
        for v in listing.videos
    ]
    problems = listing.problems + [
        DatasetProblem("split_file", "", splits_dir, message) for message in splits.errors
    ]
    return DatasetListing(
        root=listing.root,
        compression=listing.compression,
        methods=listing.methods,
        videos=videos,
        problems=problems,
        ignored=listing.ignored,
        split_policy=SPLIT_POLICY,
    )


def list_ffpp_videos(
    root: str, splits_dir: str, compression: str, methods: Sequence[str] | None
) -> DatasetListing:
    """Every video of an FF++-layout folder with its official split (see `scan_layout`).

    A split file that cannot be used is recorded as a problem and its videos are in no
    split; at least one must load.

    Raises:
      FileNotFoundError: no root or no split folder. SplitFileError (a ValueError): no
        split file usable, or the files contradict each other. ValueError: as
        `scan_layout`.
    """
    check_compression(compression)
    splits = load_splits(splits_dir, strict=False)
    return assign_splits(scan_layout(root, compression, methods), splits, splits_dir)


class FFPPDataset:
    """FaceForensics++ as its download script writes it, with the official splits."""

    name = "ffpp"

    def __init__(self, root: str, splits_dir: str | None = None):
        if not splits_dir:
            raise ValueError(
                "No split folder given: pass --splits_dir with the official FF++ split files "
                "(train.json, val.json, test.json from dataset/splits of the FaceForensics "
                "repository). Splits are never invented."
            )
        self.root = root
        self.splits_dir = splits_dir

    def list_videos(self, compression: str, methods: Sequence[str] | None) -> DatasetListing:
        """See `list_ffpp_videos`."""
        return list_ffpp_videos(self.root, self.splits_dir, compression, methods)
