"""Video decoding and frame sampling for the face-crop stage.

The paper evaluates frame-level accuracy on raw FaceForensics++ videos (Khodabakhsh &
Busch, BIOSIG 2020, Sec. 4); FF++ (Roessler et al., ICCV 2019) samples a fixed number
of frames per video. Here `frames_per_video=0` takes every frame and N > 0 takes N
evenly spaced frames. Any container and codec that OpenCV's FFmpeg backend reads is
accepted (`.mp4` H.264 as downloaded, `.avi`/`.mkv` FFV1 as generated losslessly).

Frames are sampled from the frames that actually decode, not from the count the
container declares: a header may lie, and a truncated download decodes fewer frames
than it declares. Such a video is not an error: a warning gives both counts and the
reader (`VideoFrames`) reports both. A file that cannot be opened or holds no frame
that decodes raises `VideoReadError` with a message saying which it is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import cv2
import numpy as np
from absl import logging

# Frames the decoded count may differ from the declared one without the sampling
# being redone: containers without a frame index (e.g. Matroska) estimate the count
# from the duration and may be off by one.
_COUNT_TOLERANCE_FRAMES = 1


class VideoReadError(RuntimeError):
    """A video file cannot be decoded (missing, empty, not a video, no frame decodes).

    `kind` names the failure for the manifest's counts: "unreadable" here;
    `ImageReadError` adds "truncated" and "too_small"."""

    kind = "unreadable"


class ImageReadError(VideoReadError):
    """A still image that cannot be used as a face crop; `kind` says why and `size`
    is its (height, width) where it decoded."""

    def __init__(self, message: str, kind: str, size: tuple[int, int] | None = None):
        super().__init__(message)
        self.kind = kind
        self.size = size


# How a complete file of these formats ends: a JPEG with its end-of-image marker, a
# PNG with its IEND chunk (the four bytes of its CRC follow). OpenCV decodes a cut file
# without complaint, filling what is missing with grey.
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"
_PNG_START, _PNG_END = b"\x89PNG", b"IEND"


def _truncated(data: bytes) -> bool:
    """Whether a JPEG or PNG file's bytes stop before the format's end marker."""
    tail = data[-32:]
    if data.startswith(_JPEG_START):
        return _JPEG_END not in tail
    if data.startswith(_PNG_START):
        return _PNG_END not in tail
    return False


def read_image(path: str, min_size: int = 0) -> np.ndarray:
    """Decodes a still image file as BGR uint8 [H, W, 3] (grey and alpha converted).

    Raises:
      ImageReadError: the file is missing or does not decode ("unreadable"), is a
        JPEG or PNG cut short ("truncated"), or is smaller than `min_size` on a side
        ("too_small").
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageReadError(f"Cannot read {path}: {e}", "unreadable") from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if _truncated(data):
        raise ImageReadError(
            f"{path} is cut short (no end marker after {len(data)} bytes): re-copy the file.",
            "truncated",
        )
    if image is None:
        raise ImageReadError(
            f"{path} does not decode as an image ({len(data)} bytes).", "unreadable"
        )
    size = (int(image.shape[0]), int(image.shape[1]))
    if min(size) < min_size:
        raise ImageReadError(
            f"{path} is {size[1]}x{size[0]}, smaller than the {min_size}x{min_size} crops "
            "the UBM reads: left out rather than enlarged.",
            "too_small",
            size,
        )
    return image


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


def _cap(count: int, max_frames: int) -> int:
    return min(count, max_frames) if max_frames > 0 else count


def count_frames(path: str, max_frames: int = 0) -> int:
    """Frames of a video that decode, counted by decoding (grabbing) them.

    Args:
      path: the video file.
      max_frames: if > 0, the video is treated as its first `max_frames` frames.

    Raises:
      VideoReadError: as `open_video`, or no frame decodes.
    """
    capture = open_video(path)
    count = 0
    try:
        while not 0 < max_frames <= count and capture.grab():
            count += 1
    finally:
        capture.release()
    if count == 0:
        raise VideoReadError(f"Video {path} holds no frame that OpenCV can decode.")
    return count


class VideoFrames:
    """The sampled frames of a video, in order, and its declared and decoded counts.

    Iterating yields (frame index, BGR uint8 frame [H, W, 3]) and decodes the file to
    its end (up to `max_frames`), so that afterwards `decoded` holds the frames that
    decode. Frames between samples are grabbed (decoded) but not converted to BGR.

    Sampling (frames_per_video > 0) needs the frame count before the first frame.
    Given `num_frames` (frames known to decode, e.g. `count_frames`), it samples from
    that. Otherwise it samples from the declared count, which costs one pass for the
    files whose header is right; if the file then decodes another count, the samples
    were at the wrong places: `resample` is True and the caller iterates
    `VideoFrames(path, ..., num_frames=decoded)` instead (a second pass, for these
    files only). With frames_per_video == 0 every frame that decodes is yielded and
    `resample` is never True.

    Attributes (set once iteration ends; `declared` once it starts):
      declared: the frame count the container declares (0: none), before max_frames.
      decoded: frames that decode, at most max_frames where that is > 0.
      sampled_from: the count the sample indices were drawn from.

    Raises (while iterating):
      VideoReadError: the file cannot be opened or holds no frame that decodes.
    """

    def __init__(
        self, path: str, frames_per_video: int = 0, max_frames: int = 0, num_frames: int = 0
    ):
        if frames_per_video < 0 or max_frames < 0:
            raise ValueError("frames_per_video and max_frames must be >= 0 (0: every frame).")
        self.path = path
        self.frames_per_video = frames_per_video
        self.max_frames = max_frames
        self.num_frames = num_frames
        self.declared = 0
        self.decoded = 0
        self.sampled_from = 0

    @property
    def mismatch(self) -> bool:
        """Whether the decoded count differs from the declared one beyond rounding."""
        expected = _cap(self.declared, self.max_frames)
        return abs(self.decoded - expected) > _COUNT_TOLERANCE_FRAMES

    @property
    def resample(self) -> bool:
        """Whether the samples were drawn from a count other than the decoded one."""
        return (
            self.frames_per_video > 0
            and self.decoded > 0
            and abs(self.decoded - self.sampled_from) > _COUNT_TOLERANCE_FRAMES
        )

    def _sample_count(self) -> int:
        if self.num_frames > 0:
            return _cap(self.num_frames, self.max_frames)
        if _cap(self.declared, self.max_frames) > 0:
            return _cap(self.declared, self.max_frames)
        return count_frames(self.path, self.max_frames)  # no declared count: count

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        capture = open_video(self.path)
        index = -1  # the last frame grabbed
        try:
            self.declared = declared_frame_count(capture)
            if self.frames_per_video == 0:
                wanted = None  # every frame: no count needed
                self.sampled_from = 0
            else:
                self.sampled_from = self._sample_count()
                wanted = iter(sample_frame_indices(self.sampled_from, self.frames_per_video))
            target = next(wanted, None) if wanted is not None else 0
            while not 0 < self.max_frames <= index + 1:
                if target is not None and index + 1 == target:
                    ok, frame = capture.read()
                    if not ok or frame is None:
                        break
                    index += 1
                    yield index, frame
                    target = next(wanted, None) if wanted is not None else index + 1
                elif capture.grab():
                    index += 1  # between samples, or past the last one: counted only
                else:
                    break
        finally:
            capture.release()
        self.decoded = index + 1
        if self.decoded == 0:
            raise VideoReadError(f"Video {self.path} holds no frame that OpenCV can decode.")
        if self.mismatch and not self.resample:
            logging.warning(
                "Video %s: its container declares %d frames but %d decode%s (truncated or "
                "damaged?); frames are taken from the %d that decode.",
                self.path,
                self.declared,
                self.decoded,
                f" (of the first {self.max_frames})" if self.max_frames else "",
                self.decoded,
            )


def read_frames(
    path: str, frames_per_video: int = 0, max_frames: int = 0
) -> Iterator[tuple[int, np.ndarray]]:
    """Decodes the sampled frames of a video, in order, sampled from those that decode.

    Args:
      path: any video file OpenCV reads.
      frames_per_video: 0 for every frame, N > 0 for N evenly spaced frames.
      max_frames: if > 0, only the first `max_frames` frames of the video are used
        (sampling is then spread over those).

    Yields:
      (frame index, BGR uint8 frame [H, W, 3]).

    Raises:
      VideoReadError: the file cannot be opened or holds no frame that decodes.
    """
    num_frames = count_frames(path, max_frames) if frames_per_video > 0 else 0
    yield from VideoFrames(path, frames_per_video, max_frames, num_frames)
