"""Worker processes of the face-crop stage: decode, detect and crop, in parallel.

Each worker holds its own dlib detector (dlib objects are not shared between
processes) and one OpenCV thread, and returns the crops of a video to the parent,
which writes the shards and the progress log (`face_stage`). This module and
what it imports are free of TensorFlow, so that spawned workers start in a fraction
of a second instead of importing TensorFlow each.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import cv2
from absl import logging

from data_prep.face_detection import FaceDetector, VideoCrops, crop_video
from data_prep.face_settings import FaceSettings
from data_prep.frames import VideoReadError


@dataclasses.dataclass(frozen=True)
class CropJob:
    """One video to crop; `key` identifies it to the caller."""

    key: str
    path: str


@dataclasses.dataclass
class CropResult:
    """The crops of a job, or the reason there are none; `seconds` of wall time."""

    key: str
    crops: VideoCrops | None
    error: str | None
    seconds: float


def run_job(job: CropJob, settings: FaceSettings, detector: FaceDetector) -> CropResult:
    """Crops one video; a video that cannot be decoded gives an error, not an exception."""
    start = time.perf_counter()
    crops, error = None, None
    try:
        crops = crop_video(job.path, settings, detector)
    except VideoReadError as e:
        error = str(e)
    except Exception as e:  # noqa: BLE001 - one bad video must not stop the stage
        logging.exception("Unexpected error on %s", job.path)
        error = f"{type(e).__name__}: {e}"
    return CropResult(job.key, crops, error, time.perf_counter() - start)


_state: dict[str, Any] = {}


def _watch_parent(parent: int) -> None:
    """Ends a worker whose parent died (e.g. killed), so that no orphan lingers."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(settings: FaceSettings, parent: int) -> None:
    cv2.setNumThreads(1)
    _state.update(settings=settings, detector=FaceDetector(settings.fast))
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _work(job: CropJob) -> CropResult:
    return run_job(job, _state["settings"], _state["detector"])


def map_jobs(jobs: Sequence[CropJob], settings: FaceSettings, workers: int) -> Iterator[CropResult]:
    """Results of `jobs` as they finish, from `workers` processes (in-process if 1)."""
    if workers <= 1 or len(jobs) <= 1:
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            detector = FaceDetector(settings.fast)
            for job in jobs:
                yield run_job(job, settings, detector)
        finally:
            cv2.setNumThreads(threads)
        return
    # spawn, not fork: the parent may hold TensorFlow's threads, which must not be forked.
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(jobs)), _init_worker, (settings, os.getpid())) as pool:
        yield from pool.imap_unordered(_work, jobs, chunksize=1)
