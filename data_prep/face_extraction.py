"""The face-crop stage: FF++ videos to 64x64 face-crop TFRecord shards, resumably.

For each video of the FaceForensics++ layout (`ffpp_layout`) that the official splits
(`splits`) place in a split, the sampled frames (`frames`) are decoded, the face is
found and cropped the FF++ way (`face_detection`), and the crops are written as one
TFRecord shard per video (`face_records` schema), as in the paper's preprocessing
(Khodabakhsh & Busch, BIOSIG 2020, Sec. 4):

    <out_dir>/<split>/<source>/<video>.tfrecord     source: original or the method
    <out_dir>/manifest.json                          per-video counts, totals, settings
    <out_dir>/config.json                            the settings, written first
    <out_dir>/progress.jsonl                         one line per finished video

Videos are processed in parallel by worker processes. A shard is renamed into place
only when complete, then a line is appended (and synced) to `progress.jsonl`; a
re-run skips videos whose line says `ok` and whose shard exists. A run killed at any
moment therefore ends, once re-run, with exactly the examples of an uninterrupted run:
a video cut short has no shard and no line and is redone; one whose shard was renamed
but not yet logged is redone into the same shard name. `manifest.json` is rebuilt from
`progress.jsonl` (atomically, periodically and at the end).
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

from absl import logging
from tqdm import tqdm

from data_prep.config import METHODS, ORIGINAL, SPLITS
from data_prep.face_detection import DETECTION_MODES, CropSettings, FastSettings, VideoCrops
from data_prep.face_workers import CropJob, CropResult, map_jobs
from data_prep.ffpp_layout import LayoutReport, check_request, find_videos
from data_prep.files import read_json, write_json_atomically
from data_prep.splits import SplitIndex, load_splits

# TensorFlow (the record schema and the shard writer) is imported inside the functions
# that write: worker processes import this module through the binary and should start
# without it.

MANIFEST = "manifest.json"
CONFIG = "config.json"
PROGRESS = "progress.jsonl"
SHARD_SUFFIX = ".tfrecord"
_PARTIAL_SUFFIX = SHARD_SUFFIX + ".tmp"  # tfrecord_io's temporary shard name
OK = "ok"
FAILED = "failed"
# Seconds between rewrites of manifest.json while the stage runs.
_MANIFEST_EVERY_S = 15.0
# Settings that change the examples: a resumed run must use the same ones.
_RESUME_KEYS = (
    "compression",
    "frames_per_video",
    "max_frames",
    "detection",
    "crop_size",
    "crop_scale",
    "fast",
)


@dataclasses.dataclass(frozen=True)
class ExtractionSettings:
    """Everything that decides the examples of a video (recorded in config.json)."""

    compression: str = "raw"
    frames_per_video: int = 0
    max_frames: int = 0
    detection: str = "fast"
    crop_size: int = 64
    crop_scale: float = 1.3
    fast: FastSettings = dataclasses.field(default_factory=FastSettings)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def crop_settings(self) -> CropSettings:
        return CropSettings(
            frames_per_video=self.frames_per_video,
            max_frames=self.max_frames,
            detection=self.detection,
            crop_size=self.crop_size,
            crop_scale=self.crop_scale,
            fast=self.fast,
        )


@dataclasses.dataclass(frozen=True)
class VideoTask:
    """One video to turn into a shard."""

    video: str
    method: str
    split: str
    path: str

    @property
    def key(self) -> str:
        return f"{self.method}/{self.video}"

    @property
    def label(self) -> int:
        return 0 if self.method == ORIGINAL else 1


def shard_path(out_dir: str, split: str, source: str, video: str) -> str:
    """Where the shard of one video goes: `<out_dir>/<split>/<source>/<video>.tfrecord`."""
    return os.path.join(out_dir, split, source, video + SHARD_SUFFIX)


def write_video_shard(task: VideoTask, crops: VideoCrops, compression: str, out_dir: str) -> str:
    """Writes the crops of one video as face examples, atomically; returns the path."""
    from data_prep.face_records import FaceExample, serialize_face
    from data_prep.files import write_shard_atomically

    path = shard_path(out_dir, task.split, task.method, task.video)
    records = (
        serialize_face(
            FaceExample(
                image=image,
                video=task.video,
                frame=frame,
                method=task.method,
                label=task.label,
                split=task.split,
                compression=compression,
                box=box,
            )
        )
        for frame, box, image in zip(crops.frames, crops.boxes, crops.images, strict=True)
    )
    write_shard_atomically(path, records)
    return path


def finish_video(
    task: VideoTask, result: CropResult, compression: str, out_dir: str
) -> dict[str, Any]:
    """Writes the shard of a cropped video; returns its manifest entry.

    The entry holds video, method, split, path, shard (relative to out_dir, None when
    failed), frames_read, faces, frames_without_face, seconds (wall time: decoding,
    detection, cropping, writing), status ("ok" or "failed") and error (None or why).
    A video without any face fails (it would add nothing and hides a problem).
    """
    start = time.perf_counter()
    crops, error, shard = result.crops, result.error, None
    if crops is not None and not crops.frames:
        error = f"No face found in any of the {crops.frames_read} frames read from {task.path}."
    if error is None:
        try:
            shard = os.path.relpath(write_video_shard(task, crops, compression, out_dir), out_dir)
        except Exception as e:  # noqa: BLE001 - recorded as a failed video, run goes on
            logging.exception("Cannot write the shard of %s", task.path)
            error = f"Cannot write the shard: {type(e).__name__}: {e}"
    return {
        "video": task.video,
        "method": task.method,
        "split": task.split,
        "path": task.path,
        "shard": shard,
        "frames_read": crops.frames_read if crops else 0,
        "faces": len(crops.frames) if crops and error is None else 0,
        "frames_without_face": crops.frames_without_face if crops else 0,
        "seconds": round(result.seconds + time.perf_counter() - start, 4),
        "status": OK if error is None else FAILED,
        "error": error,
    }


def _process(
    tasks: Sequence[VideoTask], out_dir: str, settings: ExtractionSettings, workers: int
) -> Iterator[dict[str, Any]]:
    """Manifest entries of `tasks` as they finish (cropped in workers, written here)."""
    by_key = {t.key: t for t in tasks}
    jobs = [CropJob(key=t.key, path=t.path) for t in tasks]
    for result in map_jobs(jobs, settings.crop_settings(), workers):
        yield finish_video(by_key[result.key], result, settings.compression, out_dir)


# --- progress journal and manifest ---------------------------------------------------


def read_progress(out_dir: str) -> dict[str, dict[str, Any]]:
    """The latest journal entry per video key (`method/video`); torn lines are ignored."""
    entries: dict[str, dict[str, Any]] = {}
    path = os.path.join(out_dir, PROGRESS)
    if not os.path.exists(path):
        return entries
    with open(path) as f:
        for line in f:
            try:
                entry = json.loads(line)
                entries[f"{entry['method']}/{entry['video']}"] = entry
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # the last line of a killed run may be cut short
    return entries


class _Journal:
    """Append-only, fsynced progress log; the record of finished videos."""

    def __init__(self, out_dir: str):
        path = os.path.join(out_dir, PROGRESS)
        needs_newline = False
        if os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                needs_newline = f.read(1) != b"\n"
        self._file = open(path, "a")  # noqa: SIM115 - closed in close()
        if needs_newline:  # end a line torn by a kill, so it stays one bad line
            self._file.write("\n")

    def append(self, entry: dict[str, Any]) -> None:
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _zero() -> dict[str, float]:
    return {
        "videos": 0,
        "ok": 0,
        "failed": 0,
        "frames_read": 0,
        "faces": 0,
        "frames_without_face": 0,
        "seconds": 0.0,
    }


def _add(total: dict[str, float], entry: dict[str, Any]) -> None:
    total["videos"] += 1
    total[entry["status"]] += 1
    for key in ("frames_read", "faces", "frames_without_face", "seconds"):
        total[key] += entry[key]


def summarize(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Totals over manifest entries: overall, per split, per method, per split and method."""
    totals: dict[str, Any] = {
        "all": _zero(),
        "by_split": collections.defaultdict(_zero),
        "by_method": collections.defaultdict(_zero),
        "by_split_method": collections.defaultdict(lambda: collections.defaultdict(_zero)),
    }
    for e in entries:
        _add(totals["all"], e)
        _add(totals["by_split"][e["split"]], e)
        _add(totals["by_method"][e["method"]], e)
        _add(totals["by_split_method"][e["split"]][e["method"]], e)
    return json.loads(json.dumps(totals))  # defaultdicts to plain dicts


def _manifest(
    settings: ExtractionSettings,
    run: dict[str, Any],
    entries: dict[str, dict[str, Any]],
    complete: bool,
) -> dict[str, Any]:
    videos = sorted(entries.values(), key=lambda e: (e["method"], e["video"]))
    totals = summarize(videos)
    failed = [e for e in videos if e["status"] == FAILED]
    return {
        "stage": "faces",
        "settings": settings.to_json(),
        **run,
        "complete": complete,
        "failed_videos": len(failed),
        "videos": videos,
        "totals": totals,
    }


def _write_manifest(out_dir: str, manifest: dict[str, Any]) -> None:
    write_json_atomically(os.path.join(out_dir, MANIFEST), manifest)


# --- the stage -----------------------------------------------------------------------


def _check_writable(out_dir: str) -> None:
    """Raises PermissionError naming the folder when the stage cannot write there."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe = os.path.join(out_dir, f".write_test_{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise PermissionError(
            f"Cannot write to the output folder {out_dir!r} ({e.strerror or e}): choose a "
            "writable --workdir."
        ) from e


def _check_resume(out_dir: str, settings: ExtractionSettings) -> None:
    """Writes config.json on the first run; refuses to mix settings on a re-run."""
    path = os.path.join(out_dir, CONFIG)
    saved = read_json(path)
    current = settings.to_json()
    if saved is None:
        write_json_atomically(path, current)
        return
    changed = [k for k in _RESUME_KEYS if saved.get(k) != current[k]]
    if changed:
        diff = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
        raise ValueError(
            f"{out_dir} holds faces prepared with other settings ({diff}). Re-run with the "
            "same settings to resume, or use a new --workdir."
        )


def _remove_partial_shards(out_dir: str) -> None:
    """Deletes temporary shards that a killed run left behind."""
    for root, _, files in os.walk(out_dir):
        for name in files:
            if name.endswith(_PARTIAL_SUFFIX):
                os.remove(os.path.join(root, name))


def _plan(layout: LayoutReport, splits: SplitIndex) -> tuple[list[VideoTask], list[dict[str, str]]]:
    """The videos to process (with their split) and those in no split."""
    tasks, unassigned = [], []
    for v in layout.videos:
        split = splits.split_of(v.video, v.method)
        if split is None:
            unassigned.append({"video": v.video, "method": v.method, "path": v.path})
        else:
            tasks.append(VideoTask(video=v.video, method=v.method, split=split, path=v.path))
    return tasks, unassigned


def _log_found(
    tasks: Sequence[VideoTask], unassigned: Sequence[dict[str, str]], run: dict[str, Any]
) -> None:
    """Logs the videos found per source and split, the unassigned ones and problems."""
    table = collections.Counter((t.method, t.split) for t in tasks)
    for method in sorted({t.method for t in tasks}):
        logging.info(
            "Found %-15s %s",
            method,
            "  ".join(f"{s}={table[(method, s)]}" for s in SPLITS),
        )
    if unassigned:
        names = ", ".join(f"{u['method']}/{u['video']}" for u in unassigned[:10])
        logging.warning(
            "%d videos are in no split and are skipped (e.g. %s).", len(unassigned), names
        )
    for problem in run["problems"]:
        logging.error("%s", problem["message"])


def _log_summary(manifest: dict[str, Any]) -> None:
    logging.info("Face crops per split and source (ok/failed videos, faces, frames w/o face):")
    for split, methods in sorted(manifest["totals"]["by_split_method"].items()):
        for method, t in sorted(methods.items()):
            logging.info(
                "  %-5s %-15s %4d ok %3d failed %8d faces %6d without face",
                split,
                method,
                t["ok"],
                t["failed"],
                t["faces"],
                t["frames_without_face"],
            )
    t = manifest["totals"]["all"]
    fps = t["frames_read"] / t["seconds"] if t["seconds"] else 0.0
    logging.info(
        "All: %d videos (%d failed), %d faces from %d frames, %.1f frames/s per worker.",
        t["videos"],
        t["failed"],
        t["faces"],
        t["frames_read"],
        fps,
    )
    for e in manifest["videos"]:
        if e["status"] == FAILED:
            logging.error("Failed: %s/%s: %s", e["method"], e["video"], e["error"])


def prepare_faces(
    ffpp_root: str,
    splits_dir: str | None,
    out_dir: str,
    compression: str = "raw",
    methods: Sequence[str] = METHODS,
    frames_per_video: int = 0,
    detection: str = "fast",
    workers: int = 1,
    max_frames: int = 0,
    crop_size: int = 64,
    crop_scale: float = 1.3,
    fast: FastSettings | None = None,
) -> dict[str, Any]:
    """Runs (or resumes) the face-crop stage; returns the manifest it wrote.

    Args:
      ffpp_root: folder written by the FF++ download script (see `ffpp_layout`).
      splits_dir: folder with the official train/val/test.json (required).
      out_dir: the stage folder (`WORKDIR/faces`); shards go to
        `<out_dir>/<split>/<source>/<video>.tfrecord`.
      compression: "raw", "c23" or "c40".
      methods: manipulation methods to include; empty for originals only.
      frames_per_video: 0 for every frame, N > 0 for N evenly spaced frames.
      detection: "fast" or "exact" (see `face_detection`).
      workers: processes working on videos in parallel.
      max_frames: if > 0, only the first `max_frames` frames of each video are used.
      crop_size: side of the saved crops (64 in the paper).
      crop_scale: crop side relative to the face box (1.3, the FF++ convention).
      fast: parameters of the fast detector.

    Returns:
      The manifest: `videos` (one entry per video, see `finish_video`), `totals`
      (`all`, `by_split`, `by_method`, `by_split_method`), `settings`, `problems`
      (missing folders, unusable split files), `unassigned` videos (in no split),
      `failed_videos`, `complete`.

    Raises:
      ValueError: bad arguments, no split folder given, or a resumed run with other
        settings. FileNotFoundError: no FF++ root or split folder. SplitFileError
        (a ValueError): no split file usable. PermissionError: out_dir not writable.
    """
    methods = tuple(methods)
    if not splits_dir:
        raise ValueError(
            "No split folder given: pass --splits_dir with the official FF++ split files "
            "(train.json, val.json, test.json from dataset/splits of the FaceForensics "
            "repository). Splits are never invented."
        )
    if detection not in DETECTION_MODES:
        raise ValueError(
            f"detection must be one of {', '.join(DETECTION_MODES)}, got {detection!r}"
        )
    if frames_per_video < 0 or max_frames < 0:
        raise ValueError("frames_per_video and max_frames must be >= 0 (0: every frame).")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}.")
    check_request(compression, methods)
    settings = ExtractionSettings(
        compression=compression,
        frames_per_video=frames_per_video,
        max_frames=max_frames,
        detection=detection,
        crop_size=crop_size,
        crop_scale=crop_scale,
        fast=fast or FastSettings(),
    )
    splits = load_splits(splits_dir, strict=False)
    layout = find_videos(ffpp_root, compression, methods)
    _check_writable(out_dir)
    _check_resume(out_dir, settings)
    _remove_partial_shards(out_dir)

    tasks, unassigned = _plan(layout, splits)
    run = {
        "ffpp_root": ffpp_root,
        "splits_dir": splits_dir,
        "methods": list(methods),
        "workers": workers,
        "found": {
            "videos": layout.counts(),
            "per_split": {
                m: dict(collections.Counter(t.split for t in tasks if t.method == m))
                for m in sorted({t.method for t in tasks})
            },
            "ignored_folders": layout.ignored,
        },
        "problems": [p.to_json() for p in layout.problems]
        + [
            {"kind": "split_file", "method": "", "path": splits_dir, "message": m}
            for m in splits.errors
        ],
        "unassigned": unassigned,
    }
    _log_found(tasks, unassigned, run)

    entries = read_progress(out_dir)
    todo = []
    for task in tasks:
        done = entries.get(task.key)
        if (
            done is not None
            and done["status"] == OK
            and done["split"] == task.split
            and os.path.exists(shard_path(out_dir, task.split, task.method, task.video))
        ):
            continue
        if done is not None and done["split"] != task.split and done.get("shard"):
            # The split files changed: the old shard would sit in the wrong split.
            stale = os.path.join(out_dir, done["shard"])
            if os.path.exists(stale):
                os.remove(stale)
        todo.append(task)
    logging.info(
        "%d videos to process, %d already done (%s).", len(todo), len(tasks) - len(todo), out_dir
    )
    # Largest files first: better balance across workers.
    todo.sort(key=lambda t: -os.path.getsize(t.path) if os.path.exists(t.path) else 0)

    if todo:
        # Load TensorFlow (for writing) now, so that no video's time includes it.
        importlib.import_module("data_prep.face_records")
        importlib.import_module("data_prep.files")
    journal = _Journal(out_dir)
    last_write = time.monotonic()
    frames, start = 0, time.monotonic()
    complete = False
    try:
        with tqdm(total=len(todo), unit="video", desc="faces", dynamic_ncols=True) as bar:
            for entry in _process(todo, out_dir, settings, workers):
                journal.append(entry)
                entries[f"{entry['method']}/{entry['video']}"] = entry
                if entry["status"] == FAILED:
                    logging.warning(
                        "%s/%s failed: %s", entry["method"], entry["video"], entry["error"]
                    )
                frames += entry["frames_read"]
                bar.update(1)
                bar.set_postfix(frames_per_s=f"{frames / max(time.monotonic() - start, 1e-9):.1f}")
                if time.monotonic() - last_write > _MANIFEST_EVERY_S:
                    _write_manifest(out_dir, _manifest(settings, run, entries, False))
                    last_write = time.monotonic()
        complete = True
    finally:
        journal.close()
        manifest = _manifest(settings, run, entries, complete)
        _write_manifest(out_dir, manifest)
    _log_summary(manifest)
    return manifest
