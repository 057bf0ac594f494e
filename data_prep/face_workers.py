"""Worker processes of the face-crop stage: decode, detect and crop, in parallel.

Each worker holds its own dlib detector (dlib objects are not shared between
processes) and one OpenCV thread, and returns the crops of a video to the parent,
which writes the shards and the progress log (`face_stage`). This module and
what it imports are free of TensorFlow, so that spawned workers start in a fraction
of a second instead of importing TensorFlow each.

A worker may die while it holds a video (the out-of-memory killer, a crash in a
decoder): the parent gives every worker one video at a time over its own pipe, so
it knows which video the dead one held. That video is given to a fresh worker once
more and, if it kills that one too, returned as failed with the reason; the other
videos go on. (`multiprocessing.Pool` would instead wait for ever for the lost
result.)
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import cv2
import numpy as np
from absl import logging

from data_prep.face_detection import Box, FaceDetector, VideoCrops, crop_mask, crop_video
from data_prep.face_settings import FaceSettings
from data_prep.frames import VideoReadError, open_video


@dataclasses.dataclass(frozen=True)
class CropJob:
    """One video to crop; `key` identifies it to the caller; `mask_path` its
    manipulation-mask video, where the dataset has one."""

    key: str
    path: str
    mask_path: str | None = None


@dataclasses.dataclass
class CropResult:
    """The crops of a job, or the reason there are none; `seconds` of wall time.

    `masks`: one per crop of `crops`, uint8 [S, S] 0/255 or None where that frame has
    no mask (None: the job has no mask video); `mask_error`: why the mask video gave
    fewer masks than crops (missing, unreadable, shorter, another frame size), if so.
    """

    key: str
    crops: VideoCrops | None
    error: str | None
    seconds: float
    masks: list[np.ndarray | None] | None = None
    mask_error: str | None = None
    # Why there are no crops, for the manifest's counts (`VideoReadError.kind`), and the
    # (height, width) of an image refused for its size.
    error_kind: str | None = None
    rejected_size: tuple[int, int] | None = None


def crop_masks(
    mask_path: str, frames: list[int], boxes: list[Box], frame_size: tuple[int, int], size: int
) -> tuple[list[np.ndarray | None], str | None]:
    """The mask crops of the given frames of a mask video, with the crop boxes used for
    the video (`face_detection.crop_mask`), in one sequential pass.

    Args:
      mask_path: the mask video; frame t masks frame t of the video.
      frames: increasing frame indices of the video's crops; boxes: their boxes.
      frame_size: the video's (height, width); a mask of another size is not used.
      size: crop side.

    Returns:
      (one uint8 [size, size] mask or None per frame, None or why some are None). A
      missing or unreadable file, or one of another frame size, gives no mask at all;
      a shorter one (FF++'s DeepFakeDetection masks are) none for the frames past its end.
    """
    masks: list[np.ndarray | None] = [None] * len(frames)
    try:
        capture = open_video(mask_path)
    except VideoReadError as e:
        return masks, f"mask not used: {e}"
    index, error = -1, None
    try:
        for i, (wanted, box) in enumerate(zip(frames, boxes, strict=True)):
            while index < wanted - 1 and capture.grab():
                index += 1
            ok, frame = capture.read() if index == wanted - 1 else (False, None)
            if not ok or frame is None:
                error = (
                    f"mask video {mask_path} ends after {index + 1} frames: the "
                    f"{len(frames) - i} crops from frame {wanted} on have no mask"
                )
                break
            index += 1
            if frame.shape[:2] != tuple(frame_size):
                error = (
                    f"mask video {mask_path} has frames of {frame.shape[1]}x"
                    f"{frame.shape[0]}, the video {frame_size[1]}x{frame_size[0]}: not used"
                )
                masks = [None] * len(frames)
                break
            masks[i] = crop_mask(frame, box, size)
    finally:
        capture.release()
    return masks, error


def run_job(job: CropJob, settings: FaceSettings, detector: FaceDetector) -> CropResult:
    """Crops one video, and its mask video where the job has one; a video that cannot
    be decoded gives an error, not an exception; a mask that cannot be used leaves
    crops without masks (`CropResult.mask_error`), never an error."""
    start = time.perf_counter()
    crops, error, error_kind, rejected_size = None, None, None, None
    masks, mask_error = None, None
    try:
        crops = crop_video(job.path, settings, detector)
    except VideoReadError as e:
        error, error_kind = str(e), e.kind
        rejected_size = getattr(e, "size", None) if e.kind == "too_small" else None
    except Exception as e:  # noqa: BLE001 - one bad video must not stop the stage
        logging.exception("Unexpected error on %s", job.path)
        error, error_kind = f"{type(e).__name__}: {e}", "error"
    if crops is not None and job.mask_path is not None:
        try:
            masks, mask_error = crop_masks(
                job.mask_path, crops.frames, crops.boxes, crops.frame_size, settings.crop_size
            )
        except Exception as e:  # noqa: BLE001 - a bad mask must not fail its video
            logging.exception("Unexpected error on the mask %s", job.mask_path)
            masks, mask_error = [None] * len(crops.frames), f"{type(e).__name__}: {e}"
    return CropResult(
        job.key,
        crops,
        error,
        time.perf_counter() - start,
        masks=masks,
        mask_error=mask_error,
        error_kind=error_kind,
        rejected_size=rejected_size,
    )


_state: dict[str, Any] = {}

# A job -> its result, in a worker; module-level so that spawned workers can import it.
Work = Callable[[CropJob, FaceSettings, FaceDetector], CropResult]
# Times a video whose worker died is given to a fresh worker before it counts as failed.
RETRIES = 1
# Workers in a row that die before they are ready (a broken install, not a video):
# the run stops with an error rather than restarting workers for ever.
_MAX_START_FAILURES = 3
_READY = "ready"


def _watch_parent(parent: int) -> None:
    """Ends a worker whose parent died (e.g. killed), so that no orphan lingers."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(settings: FaceSettings, parent: int) -> None:
    cv2.setNumThreads(1)
    # Ctrl-C reaches the whole process group: the parent stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _state.update(settings=settings, detector=FaceDetector(settings.fast))
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _worker_main(
    conn: multiprocessing.connection.Connection, settings: FaceSettings, parent: int, work: Work
) -> None:
    """A worker's loop: says it is ready, then one job in, one result out, until None."""
    _init_worker(settings, parent)
    conn.send(_READY)
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the parent is gone
            return
        if job is None:
            return
        conn.send(work(job, _state["settings"], _state["detector"]))


def death_reason(exitcode: int | None) -> str:
    """How a worker process ended, from its exit code ("signal 9, SIGKILL", ...)."""
    if exitcode is None:
        return "unknown exit status"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
        return f"signal {-exitcode}, {name}"
    return f"exit code {exitcode}"


class _Worker:
    """A worker process, its end of the pipe, and the job it holds (None: idle)."""

    def __init__(self, context: Any, settings: FaceSettings, work: Work):
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_worker_main,
            args=(child, settings, os.getpid(), work),
            daemon=True,
            name="face-worker",
        )
        self.process.start()
        child.close()  # the parent keeps only its end: EOF when the worker dies
        self.job: CropJob | None = None
        self.ready = False
        self.started = time.perf_counter()

    def messages(self) -> list[Any]:
        """What the worker sent and is not yet read; [] once it is gone."""
        out = []
        try:
            while self.conn.poll():
                out.append(self.conn.recv())
        except (EOFError, OSError):
            pass
        return out

    def dead(self) -> bool:
        """Whether the process ended; waits briefly for one whose pipe closed."""
        if self.process.is_alive():
            return False
        self.process.join()
        return True

    def stop(self, wait_s: float) -> None:
        """Asks the worker to end, then kills it if it has not within `wait_s`."""
        with contextlib.suppress(OSError, ValueError):  # already gone
            self.conn.send(None)
        self.process.join(wait_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def _in_process(
    jobs: Sequence[CropJob], settings: FaceSettings, work: Work
) -> Iterator[CropResult]:
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        detector = FaceDetector(settings.fast)
        for job in jobs:
            yield work(job, settings, detector)
    finally:
        cv2.setNumThreads(threads)


def map_jobs(
    jobs: Sequence[CropJob], settings: FaceSettings, workers: int, work: Work = run_job
) -> Iterator[CropResult]:
    """Results of `jobs` as they finish, from `workers` processes (in-process if 1).

    A job whose worker dies is given to a fresh worker `RETRIES` more times, then
    yields a failed result that says how the worker died. Every job yields one result.

    Args:
      jobs: the videos.
      settings: the crop settings, sent to every worker.
      workers: processes; 1 (or a single job) runs in this process.
      work: what a worker does with a job (a module-level function; tests replace it).

    Raises:
      RuntimeError: workers keep dying before they are ready (not a video's fault).
    """
    if workers <= 1 or len(jobs) <= 1:
        yield from _in_process(jobs, settings, work)
        return
    # spawn, not fork: the parent may hold TensorFlow's threads, which must not be forked.
    context = multiprocessing.get_context("spawn")
    pending = collections.deque(jobs)
    deaths: collections.Counter[str] = collections.Counter()
    pool = [_Worker(context, settings, work) for _ in range(min(workers, len(jobs)))]
    left, start_failures, finished = len(jobs), 0, False
    try:
        while left:
            ready = set(
                multiprocessing.connection.wait(
                    [w.conn for w in pool] + [w.process.sentinel for w in pool]
                )
            )
            results: list[CropResult] = []
            for worker in list(pool):
                if worker.conn not in ready and worker.process.sentinel not in ready:
                    continue
                for message in worker.messages():
                    if message == _READY:
                        worker.ready = True
                    else:
                        results.append(message)
                        worker.job = None
                        start_failures = 0
                if not worker.dead():
                    continue
                pool.remove(worker)
                worker.conn.close()
                how = death_reason(worker.process.exitcode)
                job = worker.job
                if job is not None:
                    deaths[job.key] += 1
                    if deaths[job.key] <= RETRIES:
                        logging.warning(
                            "A worker died (%s) on %s: giving it to a fresh worker.", how, job.path
                        )
                        pending.appendleft(job)
                    else:
                        error = (
                            f"worker process died ({how}) while processing this video, "
                            f"{deaths[job.key]} times (out of memory, or a crash in the "
                            "decoder?)"
                        )
                        results.append(
                            CropResult(job.key, None, error, time.perf_counter() - worker.started)
                        )
                elif not worker.ready:
                    start_failures += 1
                    if start_failures >= _MAX_START_FAILURES:
                        raise RuntimeError(
                            f"{start_failures} face workers in a row died ({how}) before "
                            "they were ready: check that OpenCV and dlib import in a fresh "
                            "Python process."
                        )
                if pending and len(pool) < min(workers, left):
                    pool.append(_Worker(context, settings, work))
            # Hand out the next videos before the caller writes these results.
            for worker in pool:
                if worker.ready and worker.job is None and pending:
                    worker.job = pending.popleft()
                    worker.started = time.perf_counter()
                    worker.conn.send(worker.job)
            for result in results:
                left -= 1
                yield result
        finished = True
    finally:
        for worker in pool:
            worker.stop(5.0 if finished else 0.0)
