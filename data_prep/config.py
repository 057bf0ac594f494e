"""Settings of the face-crop stage (FF++ videos to 64x64 crops)."""

from __future__ import annotations

import dataclasses

METHODS: tuple[str, ...] = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
METHOD_ABBREVIATIONS: dict[str, str] = {
    "Deepfakes": "DF",
    "Face2Face": "F2F",
    "FaceSwap": "FS",
    "NeuralTextures": "NT",
}
SPLITS: tuple[str, ...] = ("train", "val", "test")
# The `method` of pristine videos (and of their crops).
ORIGINAL = "original"


@dataclasses.dataclass(frozen=True)
class FacesConfig:
    """How frames are sampled and faces cropped."""

    compression: str = "raw"
    methods: tuple[str, ...] = METHODS
    frames_per_video: int = 32  # 0 = every frame
    detection: str = "fast"  # "fast" or "exact"
    crop_size: int = 64
    crop_scale: float = 1.3  # FF++ convention: side = 1.3 * max(w, h)


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Size of the generated FF++-layout dataset used by smoke runs."""

    identities: int = 12
    frames: int = 24
    seed: int = 0
