"""The settings of the face-crop stage: one object for the config, the stage and the detector.

`FaceSettings` says which videos are read (compression level, methods), how their
frames are sampled, and how faces are found and cropped: dlib's frontal HOG detector
and the FaceForensics++ crop, a square of side `crop_scale` x max(w, h) resized to
`crop_size` (Roessler et al., ICCV 2019; Khodabakhsh & Busch, BIOSIG 2020, Sec. 4).
`experiments/configs/` hold one per configuration (`faces`, each field overridden by
`--config.faces.<field>`), and the same object travels to the worker processes. This module imports
neither dlib nor OpenCV nor TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Any

EXACT = "exact"
FAST = "fast"
# Datasets that arrive as face crops (`datasets.crops`): every image is a face as
# another detector cut it; it is resized, not searched (dlib on a tight crop misses
# the face or cuts it again).
GIVEN = "given"
FACE_FINDERS: tuple[str, ...] = (FAST, EXACT, GIVEN)


@dataclasses.dataclass(frozen=True)
class FastSettings:
    """Parameters of the fast detector (see `face_detection`)."""

    keyframe_interval: int = 12  # frames between keyframes
    margin_levels: int = 1  # also scan this many pyramid levels below the last face's
    agree_iou: float = 0.75  # keyframes agreeing at least this much are interpolated
    # Keyframes showing the same face at two pyramid levels (IoU ~0.69) are refined
    # by bisection at most `refine_depth` times, then interpolated; a face that moved
    # away (IoU < same_face_iou), appeared or vanished is bisected to the frame.
    same_face_iou: float = 0.5
    refine_depth: int = 2


@dataclasses.dataclass(frozen=True)
class FaceSettings:
    """Which videos are read and how their faces are sampled, found and cropped.

    Every field but `methods` decides the examples of a video and is recorded in
    `faces/config.json` (`to_json`); a resumed run must use the same values.
    """

    compression: str = "raw"  # FF++ level: raw (the paper's), c23, c40
    frames_per_video: int = 0  # 0: every frame; N: N evenly spaced frames
    max_frames: int = 0  # > 0: only the first max_frames frames of a video
    # How faces are found (not deepfake detection): "fast", "exact" (dlib on every
    # full-resolution frame) or "given" (the image is the crop)
    face_finder: str = FAST
    crop_size: int = 64  # side of the saved crops in pixels
    crop_scale: float = 1.3  # FF++ convention: crop side = 1.3 * max(w, h)
    fast: FastSettings = dataclasses.field(default_factory=FastSettings)
    # Manipulation methods to read; None: every method the dataset holds; (): originals only.
    methods: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.methods is not None:
            object.__setattr__(self, "methods", tuple(m for m in self.methods if m))

    def check(self) -> None:
        """Raises ValueError for a face finder or frame count that cannot work."""
        if self.face_finder not in FACE_FINDERS:
            raise ValueError(
                f"face_finder must be one of {', '.join(FACE_FINDERS)}, got {self.face_finder!r}"
            )
        if self.frames_per_video < 0 or self.max_frames < 0:
            raise ValueError("frames_per_video and max_frames must be >= 0 (0: every frame).")

    def to_json(self) -> dict[str, Any]:
        """The settings that decide the examples (all but `methods`), as in config.json."""
        settings = dataclasses.asdict(self)
        del settings["methods"]
        return settings
