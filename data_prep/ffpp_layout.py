"""The FaceForensics++ folder layout: which videos are there, and what is missing.

The official download script (Roessler et al., ICCV 2019) lays FF++ out as

    <root>/original_sequences/youtube/{raw,c23,c40}/videos/000.mp4
    <root>/manipulated_sequences/<Method>/{raw,c23,c40}/videos/000_003.mp4

with Method in Deepfakes, Face2Face, FaceSwap, NeuralTextures (the four of the
paper, Khodabakhsh & Busch, BIOSIG 2020), and possibly FaceShifter and
DeepFakeDetection (not part of the paper's protocol: left alone) and `masks/` folders
beside the compression levels (never read). Every non-hidden file in a `videos`
folder is taken as a video, whatever its extension: OpenCV decides what it can read.
"""

from __future__ import annotations

import collections
import dataclasses
import os

from data_prep.config import METHODS, ORIGINAL

COMPRESSIONS: tuple[str, ...] = ("raw", "c23", "c40")
ORIGINAL_DIR = os.path.join("original_sequences", "youtube")
MANIPULATED_DIR = "manipulated_sequences"
# Present in newer downloads, not used by the paper.
IGNORED_METHODS: tuple[str, ...] = ("FaceShifter", "DeepFakeDetection")


@dataclasses.dataclass(frozen=True)
class VideoFile:
    """One video of the layout. `video` is the file name without extension."""

    video: str  # "000" (original) or "000_003" (fake: target_source)
    method: str  # "original" or a method name
    path: str

    @property
    def label(self) -> int:
        """0 for pristine videos, 1 for manipulated ones."""
        return 0 if self.method == ORIGINAL else 1


@dataclasses.dataclass(frozen=True)
class LayoutProblem:
    """Something the layout lacks; `kind` is one of missing_method, missing_compression,
    no_videos, duplicate_video."""

    kind: str
    method: str
    path: str
    message: str

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class LayoutReport:
    """What `find_videos` found: videos, problems, and folders it left alone."""

    root: str
    compression: str
    videos: list[VideoFile]
    problems: list[LayoutProblem]
    ignored: list[str]

    def counts(self) -> dict[str, int]:
        """Videos found per source (`original` or method)."""
        return dict(collections.Counter(v.method for v in self.videos))


def videos_dir(ffpp_root: str, method: str, compression: str) -> str:
    """The folder holding the videos of one source at one compression level."""
    base = (
        os.path.join(ffpp_root, ORIGINAL_DIR)
        if method == ORIGINAL
        else os.path.join(ffpp_root, MANIPULATED_DIR, method)
    )
    return os.path.join(base, compression, "videos")


def check_request(compression: str, methods: tuple[str, ...] | list[str]) -> None:
    """Raises ValueError for an unknown compression level or method, saying what to use."""
    if compression not in COMPRESSIONS:
        raise ValueError(
            f"Unknown compression {compression!r}: use one of {', '.join(COMPRESSIONS)}."
        )
    for method in methods:
        if method in IGNORED_METHODS:
            raise ValueError(
                f"{method} is not one of the paper's methods; use a subset of {', '.join(METHODS)}."
            )
        if method not in METHODS:
            raise ValueError(f"Unknown method {method!r}: use a subset of {', '.join(METHODS)}.")


def _available_levels(source_dir: str) -> list[str]:
    if not os.path.isdir(source_dir):
        return []
    return sorted(
        d for d in os.listdir(source_dir) if os.path.isdir(os.path.join(source_dir, d, "videos"))
    )


def _scan_source(
    ffpp_root: str, method: str, compression: str
) -> tuple[list[VideoFile], list[LayoutProblem]]:
    folder = videos_dir(ffpp_root, method, compression)
    source_dir = os.path.dirname(os.path.dirname(folder))
    name = "originals" if method == ORIGINAL else method
    if not os.path.isdir(source_dir):
        return [], [
            LayoutProblem(
                "missing_method",
                method,
                source_dir,
                f"No {name} folder at {source_dir}: download it with the FF++ script "
                "or leave it out of --methods.",
            )
        ]
    if not os.path.isdir(folder):
        levels = _available_levels(source_dir)
        found = f"found: {', '.join(levels)}" if levels else "no compression level found"
        return [], [
            LayoutProblem(
                "missing_compression",
                method,
                folder,
                f"No {compression} videos of {name} at {folder} ({found}): download that "
                "compression level or choose another with --compression.",
            )
        ]
    by_id: dict[str, list[str]] = collections.defaultdict(list)
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if entry.startswith(".") or not os.path.isfile(path):
            continue  # hidden and partial files, subfolders
        by_id[entry.split(".", 1)[0]].append(path)
    videos, problems = [], []
    for video, paths in sorted(by_id.items()):
        if len(paths) > 1:
            problems.append(
                LayoutProblem(
                    "duplicate_video",
                    method,
                    paths[0],
                    f"{len(paths)} files for video {video} of {name} "
                    f"({', '.join(os.path.basename(p) for p in paths)}): keeping "
                    f"{os.path.basename(paths[0])}; remove the others.",
                )
            )
        videos.append(VideoFile(video=video, method=method, path=paths[0]))
    if not videos:
        problems.append(
            LayoutProblem("no_videos", method, folder, f"The folder {folder} holds no video.")
        )
    return videos, problems


def find_videos(
    ffpp_root: str, compression: str, methods: tuple[str, ...] | list[str] = METHODS
) -> LayoutReport:
    """Lists the original videos and the fakes of `methods` at one compression level.

    Args:
      ffpp_root: the folder the FF++ download script wrote.
      compression: "raw", "c23" or "c40".
      methods: manipulation methods to list (empty: originals only).

    Returns:
      A LayoutReport. Missing folders are reported as problems, not raised, so the
      videos that are there can still be processed.

    Raises:
      FileNotFoundError: `ffpp_root` is not a folder.
      ValueError: unknown compression or method.
    """
    check_request(compression, methods)
    if not os.path.isdir(ffpp_root):
        raise FileNotFoundError(
            f"FF++ root {ffpp_root!r} is not a folder: pass --ffpp_root with the folder the "
            "FF++ download script wrote (holding original_sequences/ and "
            "manipulated_sequences/)."
        )
    videos: list[VideoFile] = []
    problems: list[LayoutProblem] = []
    for method in (ORIGINAL, *methods):
        found, trouble = _scan_source(ffpp_root, method, compression)
        videos.extend(found)
        problems.extend(trouble)
    ignored = []
    manipulated = os.path.join(ffpp_root, MANIPULATED_DIR)
    if os.path.isdir(manipulated):
        for name in sorted(os.listdir(manipulated)):
            if name not in methods and os.path.isdir(os.path.join(manipulated, name)):
                ignored.append(os.path.join(MANIPULATED_DIR, name))
    return LayoutReport(
        root=ffpp_root, compression=compression, videos=videos, problems=problems, ignored=ignored
    )
