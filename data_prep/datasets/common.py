"""Helpers shared by the adapters of datasets other than FF++ (Celeb-DF, DFDC, folder).

These datasets have no compression levels and their own fake "methods" (a name per
dataset, or the sub-folders of a generic folder). `select_methods` reconciles a
request with what a dataset holds; `video_id` turns a relative path into an id that
can name a shard file; `drop_duplicates` keeps one video per `source/video` key and
`finish_listing` builds the listing from what an adapter found.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from absl import logging

from data_prep.datasets.base import DatasetListing, DatasetProblem, VideoEntry
from data_prep.methods import FFPP_METHODS, order_methods


def reject_splits_dir(dataset: str, splits_dir: str | None, where: str) -> None:
    """Raises ValueError if a split folder is given to a dataset that brings its own."""
    if splits_dir:
        raise ValueError(
            f"--splits_dir={splits_dir!r} does not apply to the {dataset} dataset: {where}."
        )


def check_root(root: str, dataset: str, expected: str, allow_file: bool = False) -> None:
    """Raises FileNotFoundError if `root` is not a folder (or a file, if allowed)."""
    if os.path.isdir(root) or (allow_file and os.path.isfile(root)):
        return
    raise FileNotFoundError(
        f"--dataset_root={root!r} is not a {'folder or file' if allow_file else 'folder'}: "
        f"pass the {dataset} folder ({expected})."
    )


def select_methods(
    dataset: str, found: Sequence[str], requested: Sequence[str] | None
) -> tuple[str, ...]:
    """The fake methods to list: `requested` where they are in `found`.

    None: every method found; empty: none (reals only). FF++ method names that this
    dataset does not hold (the paper configs request the four FF++ methods) are set
    aside; if nothing else was requested, every method found is listed.

    Raises:
      ValueError: a requested method is neither found nor an FF++ method.
    """
    found = order_methods(found)
    if requested is None:
        return found
    requested = tuple(requested)
    if not requested:
        return ()
    unknown = [m for m in requested if m not in found and m not in FFPP_METHODS]
    if unknown:
        raise ValueError(
            f"The {dataset} dataset holds no method {', '.join(map(repr, unknown))} (methods "
            f"found: {', '.join(found) or 'none'}): pass some of these with "
            "--config.faces.methods, or leave it out to take every one."
        )
    kept = tuple(m for m in found if m in requested)
    if kept:
        return kept
    logging.info(
        "The %s dataset holds none of the requested FF++ methods (%s): listing every method "
        "it holds (%s).",
        dataset,
        ", ".join(requested),
        ", ".join(found) or "none",
    )
    return found


def video_id(relative_path: str) -> str:
    """The id of a video at `relative_path`: the path without its extension, folders
    joined by "__" (an id names one shard file, so it holds no separator; "." and ".."
    are left out)."""
    stem = os.path.splitext(relative_path)[0]
    parts = stem.replace("\\", "/").split("/")
    return "__".join(part for part in parts if part not in ("", ".", ".."))


def is_hidden(name: str) -> bool:
    """Hidden and partial files (".name") are never data."""
    return name.startswith(".")


def drop_duplicates(
    videos: Sequence[VideoEntry],
) -> tuple[list[VideoEntry], list[DatasetProblem]]:
    """The videos with one per `source/video` key (the first), and a `duplicate_video`
    problem naming the files of each key met more than once."""
    kept: dict[str, VideoEntry] = {}
    others: dict[str, list[str]] = {}
    for video in videos:
        if video.key in kept:
            others.setdefault(video.key, []).append(video.path)
        else:
            kept[video.key] = video
    problems = [
        DatasetProblem(
            "duplicate_video",
            kept[key].source,
            kept[key].path,
            f"{len(paths) + 1} files for video {kept[key].video} of {kept[key].source} "
            f"({', '.join([kept[key].path, *paths])}): keeping {kept[key].path}; rename or "
            "remove the others.",
        )
        for key, paths in others.items()
    ]
    return list(kept.values()), problems


def finish_listing(
    root: str,
    compression: str,
    methods: tuple[str, ...],
    videos: Sequence[VideoEntry],
    problems: list[DatasetProblem],
    ignored: list[str],
    split_policy: str,
) -> DatasetListing:
    """The listing of what an adapter found, one video per key (duplicates reported)."""
    kept, duplicates = drop_duplicates(videos)
    return DatasetListing(
        root=root,
        compression=compression,
        methods=methods,
        videos=kept,
        problems=problems + duplicates,
        ignored=ignored,
        split_policy=split_policy,
    )
