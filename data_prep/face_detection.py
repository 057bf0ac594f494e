"""dlib face detection and the FaceForensics++ face crop, exact and fast.

The paper crops faces as FaceForensics++ does (Khodabakhsh & Busch, BIOSIG 2020,
Sec. 4; Roessler et al., ICCV 2019, `detect_from_video.py` of the FF++ code): dlib's
frontal HOG detector on the grayscale frame upsampled once, the largest detection,
and a square of side 1.3 x max(w, h) centred on it, clamped to the frame.

- `exact`: that reference, on every sampled frame at full resolution.
- `fast`: nearly the same boxes (mean IoU 0.95 with `exact` on real talking-head
  videos, see BENCHMARKS.md) for a twentieth of the work. dlib scans an image pyramid
  (the frame upsampled x2, then shrunk by 5/6 per level) and finds a face of a given
  size at one level; most of the cost lies in the fine levels, where only faces much
  smaller than the one being tracked could be. A keyframe builds the pyramid exactly
  as the reference does (with dlib's own resampling) but scans only from
  `margin_levels` below the level of the last face found, so the detections it
  makes are the reference's own. Keyframes are detected every `keyframe_interval`
  frames; boxes between two keyframes that agree (IoU >= `agree_iou`) are
  interpolated linearly, and a span whose keyframes disagree (a face appears or
  leaves, or the reference jumps a pyramid level) is bisected with more
  detections (a level jump only `refine_depth` times). A keyframe that finds
  nothing falls back to the full reference. Crops are the same function of the
  boxes in both modes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator

import cv2
import dlib
import numpy as np

from data_prep.face_settings import (
    EXACT,
    FACE_FINDERS,
    FAST,
    GIVEN,
    FaceSettings,
    FastSettings,
)
from data_prep.frames import VideoFrames, read_frames, read_image
from data_prep.media import media_kind

# dlib's face detector scans `pyramid_down<6>`: each level is 5/6 the previous.
PYRAMID_N = 6
PYRAMID_STEP = PYRAMID_N / (PYRAMID_N - 1.0)
# The FF++ reference upsamples the frame once (x2) before scanning.
REFERENCE_UPSAMPLE = 1
REFERENCE_SCALE = 2.0
# Side (frame pixels) of a box that the reference finds at pyramid level 0; level k
# boxes are PYRAMID_STEP**k larger (dlib 19-20: 224 px at level 9, 386 at 12).
LEVEL0_BOX_SIDE = 43.41

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive), frame pixels


@dataclasses.dataclass
class VideoCrops:
    """The face crops of one video: `images` uint8 RGB [N, S, S, 3], with the frame
    index and crop box (x0, y0, x1, y1) of each, how many frames were read, and the
    frames the container declares and that decode (`frames.VideoFrames`), and the
    frame size (height, width; (0, 0) when no frame was read)."""

    frames: list[int]
    boxes: list[Box]
    images: np.ndarray
    frames_read: int
    frames_without_face: int
    frames_declared: int = 0
    frames_decoded: int = 0
    frame_size: tuple[int, int] = (0, 0)


def box_iou(a: Iterable[float], b: Iterable[float]) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    ax0, ay0, ax1, ay1 = (float(v) for v in a)
    bx0, by0, bx1, by1 = (float(v) for v in b)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def crop_box(
    face: Iterable[float], frame_width: int, frame_height: int, scale: float = 1.3
) -> Box | None:
    """The FF++ square crop around a detected face, clamped to the frame.

    The square has side int(scale * max(w, h)) and is centred on the face box; where
    it would leave the frame its top-left corner is clamped to the frame and its side
    shortened to fit (as FF++ does), so the crop stays square.

    Args:
      face: detection box (x0, y0, x1, y1) in frame pixels, floats allowed.
      frame_width, frame_height: frame size in pixels.
      scale: side of the square relative to the larger side of the face box.

    Returns:
      (x0, y0, x1, y1) integer square inside the frame, or None when the face lies
      so far outside the frame that no square of at least 2 pixels remains.
    """
    x0, y0, x1, y1 = (float(v) for v in face)
    side = int(max(x1 - x0, y1 - y0) * scale)
    left = min(max(int(math.floor((x0 + x1) / 2 - side / 2)), 0), frame_width - 1)
    top = min(max(int(math.floor((y0 + y1) / 2 - side / 2)), 0), frame_height - 1)
    side = min(side, frame_width - left, frame_height - top)
    if side < 2:
        return None
    return (left, top, left + side, top + side)


def crop_face(frame_bgr: np.ndarray, box: Box, size: int = 64) -> np.ndarray:
    """Cuts `box` out of a BGR frame [H, W, 3] and returns RGB uint8 [size, size, 3].

    Resized with area interpolation (the FF++/paper convention).
    """
    x0, y0, x1, y1 = box
    patch = frame_bgr[y0:y1, x0:x1]
    patch = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(patch, cv2.COLOR_BGR2RGB)


def crop_mask(mask_frame: np.ndarray, box: Box, size: int = 64) -> np.ndarray:
    """Cuts `box` out of a manipulation-mask frame and returns uint8 [size, size], 0/255.

    The mask frame (BGR [H, W, 3] or gray [H, W]; FF++ masks are white on black, and
    lossy where the videos are) is taken to gray, resized like the face crop (area
    interpolation), then thresholded: >= 128 -> 255, else 0. A crop pixel is therefore
    manipulated where at least half of the frame pixels it averages are.
    """
    x0, y0, x1, y1 = box
    patch = mask_frame[y0:y1, x0:x1]
    if patch.ndim == 3:
        patch = cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY)
    patch = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return np.where(patch >= 128, 255, 0).astype(np.uint8)


def _largest(rects: dlib.rectangles) -> dlib.rectangle | None:
    """The largest of dlib's detections, or None."""
    if len(rects) == 0:
        return None
    return max(rects, key=lambda r: r.width() * r.height())


def _as_box(rect: dlib.rectangle) -> np.ndarray:
    """A dlib rectangle (inclusive corners) as float [4] (x0, y0, x1, y1), x1/y1 exclusive."""
    return np.array(
        [rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], dtype=np.float64
    )


def pyramid_level(face_side: float) -> float:
    """The reference pyramid level (fractional) at which a face of this side is found."""
    return math.log(max(face_side, 1.0) / LEVEL0_BOX_SIDE) / math.log(PYRAMID_STEP)


class FaceDetector:
    """dlib's frontal face detector; one per process (dlib objects are not shared)."""

    def __init__(self, settings: FastSettings | None = None):
        self._dlib = dlib.get_frontal_face_detector()
        self._up = dlib.pyramid_down(2)  # the reference's x2 upsampling inverts this
        self._down = dlib.pyramid_down(PYRAMID_N)
        self.settings = settings or FastSettings()
        self.calls = 0  # detector runs, for diagnostics

    def detect_exact(self, frame_bgr: np.ndarray) -> np.ndarray | None:
        """Reference detection: grayscale, full resolution, upsampled once.

        Returns the largest face as float [4] (x0, y0, x1, y1) or None.
        """
        self.calls += 1
        gray = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        rect = _largest(self._dlib(gray, REFERENCE_UPSAMPLE))
        return None if rect is None else _as_box(rect)

    def detect_from_level(self, frame_bgr: np.ndarray, level: int) -> np.ndarray | None:
        """Detection restricted to levels >= `level` of the reference pyramid.

        The level-`level` image is built exactly as the reference builds it (dlib's
        x2 upsampling, then `level` dlib 5/6 downsamplings), so the detections found
        there are the reference's own; only the finer levels, where faces smaller
        than the hint would be, are skipped.

        Returns the largest face as float [4] in frame pixels, or None.
        """
        if level <= 0:
            return self.detect_exact(frame_bgr)
        self.calls += 1
        gray = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        height, width = gray.shape
        size = self._up.rect_up(dlib.rectangle(0, 0, width - 1, height - 1))
        image = dlib.resize_image(gray, size.bottom() + 1, size.right() + 1)
        for _ in range(level):
            image = self._down(image)
        rect = _largest(self._dlib(image, 0))
        if rect is None:
            return None
        return _as_box(self._up.rect_down(self._down.rect_up(rect, level)))

    def detect_near(self, frame_bgr: np.ndarray, hint: np.ndarray | None) -> np.ndarray | None:
        """Detection of a face about the size of `hint` (the last face found).

        Scans from `margin_levels` pyramid levels below the hint's level up, so faces
        down to PYRAMID_STEP**-margin_levels of the hint's size are still found; when
        nothing is found there, or without a hint, runs the reference detection.

        Args:
          frame_bgr: uint8 [H, W, 3].
          hint: float [4] (x0, y0, x1, y1) or None.

        Returns:
          The largest face as float [4] in frame pixels, or None.
        """
        if hint is None:
            return self.detect_exact(frame_bgr)
        side = max(hint[2] - hint[0], hint[3] - hint[1])
        level = int(math.floor(pyramid_level(side) + 0.5)) - self.settings.margin_levels
        box = self.detect_from_level(frame_bgr, level)
        if box is None and level > 0:
            box = self.detect_exact(frame_bgr)
        return box


@dataclasses.dataclass
class _Keyed:
    index: int
    frame: np.ndarray
    box: np.ndarray | None


def _interpolate(a: _Keyed, b: _Keyed, index: int) -> np.ndarray:
    t = (index - a.index) / (b.index - a.index)
    return (1.0 - t) * a.box + t * b.box


def _resolve(
    detector: FaceDetector, a: _Keyed, mids: list[_Keyed], b: _Keyed, depth: int = 0
) -> Iterator[_Keyed]:
    """Boxes for the frames strictly between keyframes a and b, in order."""
    if not mids:
        return
    if a.box is None and b.box is None:
        # No face at either end: none assumed between (saves scanning faceless spans).
        yield from mids
        return
    settings = detector.settings
    if a.box is not None and b.box is not None:
        iou = box_iou(a.box, b.box)
        # Interpolate where the ends agree, or where they show the same face one
        # pyramid level apart and the span was already refined enough.
        if iou >= settings.agree_iou or (
            iou >= settings.same_face_iou and depth >= settings.refine_depth
        ):
            for m in mids:
                m.box = _interpolate(a, b, m.index)
                yield m
            return
    # Disagreement: detect the middle frame and resolve both halves.
    j = len(mids) // 2
    mid = mids[j]
    mid.box = detector.detect_near(mid.frame, a.box if a.box is not None else b.box)
    yield from _resolve(detector, a, mids[:j], mid, depth + 1)
    yield mid
    yield from _resolve(detector, mid, mids[j + 1 :], b, depth + 1)


def track_faces(
    frames: Iterable[tuple[int, np.ndarray]], detector: FaceDetector, detection: str = FAST
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """Face boxes for a stream of frames, in frame order.

    Args:
      frames: (frame index, BGR uint8 [H, W, 3]) in increasing index order.
      detector: the process's FaceDetector.
      detection: "exact" (reference on every frame) or "fast" (see module docstring);
        fast holds at most `keyframe_interval` frames in memory.

    Yields:
      (frame index, frame, detection box float [4] (x0, y0, x1, y1) or None).
    """
    if detection not in FACE_FINDERS:
        raise ValueError(f"face_finder must be one of {FACE_FINDERS}, got {detection!r}")
    if detection == EXACT:
        for index, frame in frames:
            yield index, frame, detector.detect_exact(frame)
        return
    interval = max(1, detector.settings.keyframe_interval)
    last: _Keyed | None = None
    pending: list[_Keyed] = []
    for index, frame in frames:
        item = _Keyed(index, frame, None)
        if last is None:
            item.box = detector.detect_near(frame, None)
            last = item
            yield item.index, item.frame, item.box
            continue
        if index - last.index < interval:
            pending.append(item)
            continue
        item.box = detector.detect_near(frame, last.box)
        for m in _resolve(detector, last, pending, item):
            yield m.index, m.frame, m.box
        yield item.index, item.frame, item.box
        last, pending = item, []
    if pending and last is not None:
        # The stream ended between keyframes: its last frame closes the span.
        end = pending.pop()
        end.box = detector.detect_near(end.frame, last.box)
        for m in _resolve(detector, last, pending, end):
            yield m.index, m.frame, m.box
        yield end.index, end.frame, end.box


def detect_faces(
    video_path: str,
    frames_per_video: int = 0,
    detection: str = FAST,
    max_frames: int = 0,
    scale: float = 1.3,
    detector: FaceDetector | None = None,
) -> list[tuple[int, Box | None]]:
    """FF++ crop boxes of the sampled frames of one video.

    Args:
      video_path: any video OpenCV reads.
      frames_per_video: 0 for every frame, N > 0 for N evenly spaced frames.
      detection: "fast" or "exact".
      max_frames: if > 0, only the first `max_frames` frames are used.
      scale: crop side relative to the larger side of the face box.
      detector: reuse a detector (one is made otherwise).

    Returns:
      [(frame index, crop box (x0, y0, x1, y1) or None where no face was found)].

    Raises:
      VideoReadError: the video cannot be decoded.
    """
    detector = detector or FaceDetector()
    results = []
    frames = read_frames(video_path, frames_per_video, max_frames)
    for index, frame, face in track_faces(frames, detector, detection):
        height, width = frame.shape[:2]
        box = crop_box(face, width, height, scale) if face is not None else None
        results.append((index, box))
    return results


def crop_video(
    video_path: str, settings: FaceSettings, detector: FaceDetector | None = None
) -> VideoCrops:
    """The FF++ face crops of the sampled frames of one video.

    Uses the sampling (frames_per_video, max_frames), detection, crop_size, crop_scale
    and fast settings of `settings`. Frames are sampled from the frames that decode:
    where that count is not the declared one, the video is read a second time with
    the samples drawn from the decoded count. Frames without a face are counted in
    `frames_without_face` and skipped. Crops are uint8 RGB [N, crop_size, crop_size, 3].

    With `settings.face_finder == "given"` the file is taken as a face crop already
    (`crop_given`).

    Raises:
      VideoReadError: the video cannot be opened, or no frame decodes.
    """
    if settings.face_finder == GIVEN:
        return crop_given(video_path, settings)
    detector = detector or FaceDetector(settings.fast)
    reader = VideoFrames(video_path, settings.frames_per_video, settings.max_frames)
    crops = _crop_frames(reader, settings, detector)
    if reader.resample:
        reader = VideoFrames(
            video_path, settings.frames_per_video, settings.max_frames, reader.decoded
        )
        crops = _crop_frames(reader, settings, detector)
    crops.frames_declared, crops.frames_decoded = reader.declared, reader.decoded
    return crops


def crop_given(path: str, settings: FaceSettings) -> VideoCrops:
    """A face crop taken as given: the whole image (or every sampled frame of a video of
    crops) resized to `settings.crop_size` with area interpolation; box = the image.

    Raises:
      ImageReadError: an image that does not decode, is cut short or is smaller than
        the crop size (`frames.read_image`). VideoReadError: a video that does not.
    """
    size = settings.crop_size
    if media_kind(path) == "image":
        frames = iter([(0, read_image(path, min_size=size))])
    else:
        frames = iter(VideoFrames(path, settings.frames_per_video, settings.max_frames))
    indices, boxes, images = [], [], []
    height = width = 0
    for index, frame in frames:
        height, width = frame.shape[:2]
        indices.append(index)
        boxes.append((0, 0, width, height))
        images.append(crop_face(frame, boxes[-1], size))
    return VideoCrops(
        frames=indices,
        boxes=boxes,
        images=np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8),
        frames_read=len(indices),
        frames_without_face=0,
        frames_declared=len(indices),
        frames_decoded=len(indices),
        frame_size=(height, width),
    )


def _crop_frames(reader: VideoFrames, settings: FaceSettings, detector: FaceDetector) -> VideoCrops:
    """The crops of the frames `reader` yields (see `crop_video`)."""
    size = settings.crop_size
    frames, boxes, images = [], [], []
    frames_read = 0
    height = width = 0
    for index, frame, face in track_faces(iter(reader), detector, settings.face_finder):
        frames_read += 1
        height, width = frame.shape[:2]
        box = crop_box(face, width, height, settings.crop_scale) if face is not None else None
        if box is None:
            continue
        frames.append(index)
        boxes.append(box)
        images.append(crop_face(frame, box, size))
    return VideoCrops(
        frames=frames,
        boxes=boxes,
        images=np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8),
        frames_read=frames_read,
        frames_without_face=frames_read - len(frames),
        frame_size=(height, width),
    )
