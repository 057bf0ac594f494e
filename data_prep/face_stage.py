"""The face-crop stage: a dataset's videos to 64x64 face-crop TFRecord shards, resumably.

For each video that a dataset adapter (`datasets`) lists in a split, the sampled
frames (`frames`) are decoded, the face is found and cropped the FaceForensics++ way
(`face_detection`: dlib's frontal HOG detector, a 1.3 x max(w, h) square), and the
crops are written as one TFRecord shard per video (`face_records` schema), as in the
paper's preprocessing (Khodabakhsh & Busch, BIOSIG 2020, Sec. 4). Where the adapter
lists a fake's manipulation mask video (`VideoEntry.mask_path`), every crop also gets
its mask, cut with the same box (`face_detection.crop_mask`); frames the mask video
lacks (missing, short, unreadable) get none and are counted, and never fail the video:

    <out_dir>/<split>/<source>/<video>.tfrecord     source: original or the method
    <out_dir>/manifest.json                          per-video counts, totals, settings
    <out_dir>/config.json                            the settings, written first
    <out_dir>/progress.jsonl                         one line per finished video

Videos are processed in parallel by worker processes (`face_workers`). A shard is
renamed into place only when complete, then a line is appended (and synced) to the
journal (`face_journal`); a re-run skips videos whose line says `ok` and whose shard
exists. A run killed at any moment therefore ends, once re-run, with exactly the
examples of an uninterrupted run: a video cut short has no shard and no line and is
redone; one whose shard was renamed but not yet logged is redone into the same shard
name. The manifest (`face_manifest`) is rebuilt from the journal (atomically,
periodically and at the end).
"""

from __future__ import annotations

import collections
import importlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging
from tqdm import tqdm

from data_prep.datasets import DatasetListing, VideoDataset, VideoEntry
from data_prep.face_detection import VideoCrops
from data_prep.face_journal import Journal, entry_key, read_progress
from data_prep.face_manifest import (
    FAILED,
    OK,
    build_manifest,
    log_summary,
)
from data_prep.face_settings import FaceSettings
from data_prep.face_workers import CropJob, CropResult, map_jobs
from data_prep.files import TMP_SUFFIX
from data_prep.methods import ORIGINAL, SPLITS
from data_prep.stage_folder import StageFolder, key_clashes

# TensorFlow (the record schema and the shard writer) is imported inside the functions
# that write: worker processes import this module through the binary and should start
# without it.

SHARD_SUFFIX = ".tfrecord"
# Seconds between rewrites of manifest.json while the stage runs.
_MANIFEST_EVERY_S = 15.0
# Settings that change the examples: a resumed run must use the same ones.
_RESUME_KEYS = (
    "compression",
    "frames_per_video",
    "max_frames",
    "face_finder",
    "crop_size",
    "crop_scale",
    "fast",
)


def shard_path(out_dir: str, split: str, source: str, video: str) -> str:
    """Where the shard of one video goes: `<out_dir>/<split>/<source>/<video>.tfrecord`."""
    return os.path.join(out_dir, split, source, video + SHARD_SUFFIX)


def write_video_shard(
    video: VideoEntry,
    crops: VideoCrops,
    compression: str,
    out_dir: str,
    masks: list[np.ndarray | None] | None = None,
) -> str:
    """Writes the crops of one video as face examples, atomically; returns the path.

    `crops.images` is uint8 [N, S, S, 3]; one example per crop. `masks`: None, or one
    uint8 [S, S] mask (or None: that crop has none) per crop.
    """
    from data_prep.face_records import FaceExample, serialize_face
    from data_prep.files import write_shard_atomically

    path = shard_path(out_dir, video.split, video.source, video.video)
    records = (
        serialize_face(
            FaceExample(
                image=image,
                video=video.video,
                frame=frame,
                method=video.source,
                label=video.label,
                split=video.split,
                compression=compression,
                box=box,
                mask=mask,
            )
        )
        for frame, box, image, mask in zip(
            crops.frames,
            crops.boxes,
            crops.images,
            masks if masks is not None else [None] * len(crops.frames),
            strict=True,
        )
    )
    write_shard_atomically(path, records)
    return path


def finish_video(
    video: VideoEntry, result: CropResult, compression: str, out_dir: str
) -> dict[str, Any]:
    """Writes the shard of a cropped video; returns its manifest entry.

    The entry holds video, method, split, path, shard (relative to out_dir, None when
    failed), frames_read (the sampled frames), faces, frames_without_face,
    frames_declared (by the container; 0: none) and frames_decoded (that decode, at
    most max_frames; frames are sampled from these; 0 when failed before decoding),
    seconds (wall time: decoding, detection, cropping, writing), status ("ok" or
    "failed") and error (None or why); for fakes, mask_path (None: the dataset
    lists no mask), frames_with_mask and frames_without_mask (the crops written with
    and without a mask; both 0 for originals and failed videos) and mask_error (None
    or why some crops have no mask). A video without any face fails (it would add
    nothing and hides a problem); a mask never fails a video.
    """
    start = time.perf_counter()
    crops, error, shard = result.crops, result.error, None
    error_kind = result.error_kind
    if crops is not None and not crops.frames:
        error = f"No face found in any of the {crops.frames_read} frames read from {video.path}."
        error_kind = "no_face"
    if error is None:
        try:
            shard = os.path.relpath(
                write_video_shard(video, crops, compression, out_dir, result.masks), out_dir
            )
        except Exception as e:  # noqa: BLE001 - recorded as a failed video, run goes on
            logging.exception("Cannot write the shard of %s", video.path)
            error = f"Cannot write the shard: {type(e).__name__}: {e}"
            error_kind = "write"
    faces = len(crops.frames) if crops and error is None else 0
    with_mask = sum(m is not None for m in result.masks) if result.masks and faces else 0
    entry = {
        "video": video.video,
        "method": video.source,
        "split": video.split,
        "path": video.path,
        "shard": shard,
        "frames_read": crops.frames_read if crops else 0,
        "faces": faces,
        "frames_without_face": crops.frames_without_face if crops else 0,
        "frames_declared": crops.frames_declared if crops else 0,
        "frames_decoded": crops.frames_decoded if crops else 0,
        "seconds": round(result.seconds + time.perf_counter() - start, 4),
        "status": OK if error is None else FAILED,
        "error": error,
    }
    if error is not None:
        entry["error_kind"] = error_kind or "unreadable"
        if result.rejected_size is not None:
            entry["rejected_size"] = list(result.rejected_size)
    if video.source != ORIGINAL:
        entry.update(
            mask_path=video.mask_path,
            frames_with_mask=with_mask,
            frames_without_mask=faces - with_mask,
            mask_error=result.mask_error if video.mask_path else None,
        )
    return entry


def _process(
    videos: Sequence[VideoEntry], out_dir: str, settings: FaceSettings, workers: int
) -> Iterator[dict[str, Any]]:
    """Manifest entries of `videos` as they finish (cropped in workers, written here)."""
    by_key = {v.key: v for v in videos}
    jobs = [CropJob(key=v.key, path=v.path, mask_path=v.mask_path) for v in videos]
    for result in map_jobs(jobs, settings, workers):
        yield finish_video(by_key[result.key], result, settings.compression, out_dir)


def _settings_clashes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The settings that change the examples and differ from a previous run's."""
    if "detection" in saved and "face_finder" not in saved:
        # Folders written before face finding had its own name.
        saved = {**saved, "face_finder": saved["detection"]}
    return key_clashes(_RESUME_KEYS)(saved, current)


def _remove_partial_shards(out_dir: str) -> None:
    """Deletes temporary shards that a killed run left behind."""
    for root, _, files in os.walk(out_dir):
        for name in files:
            if name.endswith(SHARD_SUFFIX + TMP_SUFFIX):
                os.remove(os.path.join(root, name))


def _found(dataset: VideoDataset, listing: DatasetListing, workers: int) -> dict[str, Any]:
    """The manifest's record of the dataset: root, splits, what was found and missing."""
    assigned = listing.assigned()
    return {
        "dataset": dataset.name,
        "ffpp_root": dataset.root,  # the dataset's root (the name predates other datasets)
        "splits_dir": dataset.splits_dir,
        "split_policy": listing.split_policy,
        "methods": list(listing.methods),
        "workers": workers,
        "found": {
            "videos": listing.counts(),
            "per_split": {
                m: dict(collections.Counter(v.split for v in assigned if v.source == m))
                for m in sorted({v.source for v in assigned})
            },
            "ignored_folders": listing.ignored,
        },
        "problems": [p.to_json() for p in listing.problems],
        "unassigned": [
            {"video": v.video, "method": v.source, "path": v.path} for v in listing.unassigned()
        ],
    }


def _log_found(listing: DatasetListing) -> None:
    """Logs the videos found per source and split, the unassigned ones and problems."""
    assigned = listing.assigned()
    table = collections.Counter((v.source, v.split) for v in assigned)
    for source in sorted({v.source for v in assigned}):
        logging.info(
            "Found %-15s %s",
            source,
            "  ".join(f"{s}={table[(source, s)]}" for s in SPLITS),
        )
    unassigned = listing.unassigned()
    if unassigned:
        names = ", ".join(v.key for v in unassigned[:10])
        logging.warning(
            "%d videos are in no split and are skipped (e.g. %s).", len(unassigned), names
        )
    for problem in listing.problems:
        logging.error("%s", problem.message)


def _to_do(
    videos: Sequence[VideoEntry], entries: dict[str, dict[str, Any]], folder: StageFolder
) -> list[VideoEntry]:
    """The videos not yet done (a journal line `ok` in the same split and the shard
    there), largest files first; shards left in a stale split go."""
    todo = []
    for video in videos:
        done = entries.get(video.key)
        if (
            done is not None
            and done["status"] == OK
            and done["split"] == video.split
            and folder.done(shard_path(folder.path, video.split, video.source, video.video))
        ):
            continue
        if done is not None and done["split"] != video.split and done.get("shard"):
            # The split files changed: the old shard would sit in the wrong split.
            stale = os.path.join(folder.path, done["shard"])
            if os.path.exists(stale):
                os.remove(stale)
        todo.append(video)
    # Largest files first: better balance across workers.
    todo.sort(key=lambda v: -os.path.getsize(v.path) if os.path.exists(v.path) else 0)
    return todo


def prepare_faces(
    dataset: VideoDataset,
    out_dir: str,
    settings: FaceSettings | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Runs (or resumes) the face-crop stage; returns the manifest it wrote.

    Args:
      dataset: the adapter listing the videos (`datasets.open_dataset`).
      out_dir: the stage folder (`WORKDIR/faces`); shards go to
        `<out_dir>/<split>/<source>/<video>.tfrecord`.
      settings: compression, methods (None: every method the dataset holds; empty:
        originals only), frame sampling, detection and crop (FaceSettings() if None).
      workers: processes working on videos in parallel.

    Returns:
      The manifest: `videos` (one entry per video, see `finish_video`), `totals`
      (`all`, `by_split`, `by_method`, `by_split_method`), `settings`, `problems`
      (missing folders, unusable split files), `unassigned` videos (in no split),
      `failed_videos`, `complete`.

    Raises:
      ValueError: bad settings, a request the dataset cannot meet, or a resumed run
        with other settings. FileNotFoundError: no dataset root or split folder.
        SplitFileError (a ValueError): no split file usable. PermissionError: out_dir
        not writable.
    """
    settings = settings or FaceSettings()
    settings.check()
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}.")
    listing = dataset.list_videos(settings.compression, settings.methods)
    folder = StageFolder(
        out_dir, "faces", "re-run with the same settings to resume, or use a new --workdir"
    )
    folder.claim(settings.to_json(), _settings_clashes)
    _remove_partial_shards(out_dir)

    run = _found(dataset, listing, workers)
    _log_found(listing)
    videos = listing.assigned()
    entries = read_progress(out_dir)
    todo = _to_do(videos, entries, folder)
    logging.info(
        "%d videos to process, %d already done (%s).", len(todo), len(videos) - len(todo), out_dir
    )
    if todo:
        # Load TensorFlow (for writing) now, so that no video's time includes it.
        importlib.import_module("data_prep.face_records")
    last_write = time.monotonic()
    frames, start = 0, time.monotonic()
    complete = False
    try:
        with (
            Journal(out_dir) as journal,
            tqdm(total=len(todo), unit="video", desc="faces", dynamic_ncols=True) as bar,
        ):
            for entry in _process(todo, out_dir, settings, workers):
                journal.append(entry)
                entries[entry_key(entry)] = entry
                if entry["status"] == FAILED:
                    logging.warning(
                        "%s/%s failed: %s", entry["method"], entry["video"], entry["error"]
                    )
                elif entry.get("mask_error"):
                    logging.warning(
                        "%s/%s: %s", entry["method"], entry["video"], entry["mask_error"]
                    )
                frames += entry["frames_read"]
                bar.update(1)
                bar.set_postfix(frames_per_s=f"{frames / max(time.monotonic() - start, 1e-9):.1f}")
                if time.monotonic() - last_write > _MANIFEST_EVERY_S:
                    folder.write_manifest(build_manifest(settings, run, entries, False))
                    last_write = time.monotonic()
        complete = True
    finally:
        manifest = build_manifest(settings, run, entries, complete)
        folder.write_manifest(manifest)
    log_summary(manifest)
    return manifest
