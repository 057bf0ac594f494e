"""Video decoding and frame sampling for the face-crop stage.

The paper evaluates frame-level accuracy on raw FaceForensics++ videos (Khodabakhsh &
Busch, BIOSIG 2020, Sec. 4); FF++ (Roessler et al., ICCV 2019) samples a fixed number
of frames per video. Here `frames_per_video=0` takes every frame and N > 0 takes N
evenly spaced frames. Any container and codec that OpenCV's FFmpeg backend reads is
accepted (`.mp4` H.264 as downloaded, `.avi`/`.mkv` FFV1 as generated losslessly).

A file that cannot be opened, holds no frame or stops before the frame count its
container declares raises `VideoReadError` with a message saying which of these it is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import cv2
import numpy as np

# Frames a decoder may fall short of the declared count before the file counts as
# truncated: containers without a frame index (e.g. Matroska) estimate the count
# from the duration and may be off by one.
_COUNT_TOLERANCE_FRAMES = 1


class VideoReadError(RuntimeError):
    """A video file cannot be decoded (missing, empty, not a video, truncated)."""


def sample_frame_indices(num_frames: int, frames_per_video: int) -> list[int]:
    """Indices of the frames to use from a video of `num_frames` frames.

    Args:
      num_frames: frames in the video (> 0).
      frames_per_video: 0 for every frame; N > 0 for N evenly spaced frames (first and
        last included); every frame when N >= num_frames.

    Returns:
      Sorted, distinct frame indices in [0, num_frames).
    """
    if num_frames <= 0:
        return []
    if frames_per_video < 0:
        raise ValueError(f"frames_per_video must be >= 0 (0 = every frame), got {frames_per_video}")
    if frames_per_video == 0 or frames_per_video >= num_frames:
        return list(range(num_frames))
    if frames_per_video == 1:
        return [num_frames // 2]
    spaced = np.round(np.linspace(0, num_frames - 1, frames_per_video)).astype(int)
    return sorted({int(i) for i in spaced})


def open_video(path: str) -> cv2.VideoCapture:
    """Opens a video with OpenCV's FFmpeg backend, single-threaded.

    One decoding thread per process: videos are parallelised across processes, and
    per-core speeds are then measured honestly.

    Raises:
      VideoReadError: the file is missing, empty, or not a video OpenCV can open.
    """
    if not os.path.isfile(path):
        raise VideoReadError(f"Video file {path} does not exist.")
    if os.path.getsize(path) == 0:
        raise VideoReadError(f"Video file {path} is empty (0 bytes): download it again.")
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    if not capture.isOpened():
        raise VideoReadError(
            f"OpenCV cannot open {path}: it is not a video, or it is damaged or truncated "
            "(for example an .mp4 whose index is missing). Download it again."
        )
    return capture


def declared_frame_count(capture: cv2.VideoCapture) -> int:
    """The frame count the container declares, or 0 where it declares none."""
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    return int(count) if count and count > 0 else 0


def count_frames(path: str, max_frames: int = 0) -> int:
    """Frames of a video: the declared count, else counted by decoding.

    Args:
      path: the video file.
      max_frames: if > 0, the video is treated as its first `max_frames` frames.

    Raises:
      VideoReadError: as `open_video`, or no frame decodes.
    """
    capture = open_video(path)
    try:
        count = declared_frame_count(capture)
        if count == 0:
            while capture.grab():
                count += 1
                if 0 < max_frames <= count:
                    break
    finally:
        capture.release()
    if count == 0:
        raise VideoReadError(f"Video {path} holds no frame that OpenCV can decode.")
    return min(count, max_frames) if max_frames > 0 else count


def read_frames(
    path: str, frames_per_video: int = 0, max_frames: int = 0
) -> Iterator[tuple[int, np.ndarray]]:
    """Decodes the sampled frames of a video, in order.

    Args:
      path: any video file OpenCV reads.
      frames_per_video: 0 for every frame, N > 0 for N evenly spaced frames.
      max_frames: if > 0, only the first `max_frames` frames of the video are used
        (sampling is then spread over those).

    Yields:
      (frame index, BGR uint8 frame [H, W, 3]).

    Raises:
      VideoReadError: the file cannot be opened, holds no frame, or ends before its
        declared frame count (truncated or damaged); raised after the frames that did
        decode have been yielded.
    """
    num_frames = count_frames(path, max_frames)
    wanted = sample_frame_indices(num_frames, frames_per_video)
    capture = open_video(path)
    index = -1
    try:
        for target in wanted:
            # Frames between samples are grabbed (demuxed and decoded) but not
            # converted to BGR.
            while index < target - 1:
                if not capture.grab():
                    break
                index += 1
            if index != target - 1:
                break
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            index += 1
            yield index, frame
    finally:
        capture.release()
    decoded = index + 1
    last_wanted = wanted[-1] + 1 if wanted else 0
    if decoded == 0:
        raise VideoReadError(f"Video {path} holds no frame that OpenCV can decode.")
    if decoded < last_wanted - _COUNT_TOLERANCE_FRAMES:
        raise VideoReadError(
            f"Video {path} stops after {decoded} of the {num_frames} frames its container "
            "declares: the file is truncated or damaged. Download it again."
        )
