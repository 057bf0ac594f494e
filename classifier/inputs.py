"""What the detector reads: the likelihood map (the method), or the crop's pixels.

Khodabakhsh & Busch (BIOSIG 2020) argue that the UBM's map removes the image
content that hides a manipulation's traces. The test of that claim is the same LeNet,
trained the same way, on the pixels of the same crops: grey or RGB, and the map and
the grey pixels together (in case the map complements the pixels rather than
replacing them). Every kind is built from one likelihood record (which keeps its
crop), one plane per channel, each standardised with its own training mean and
deviation (`classifier.data.MapScan`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from classifier.config import INPUT_KINDS, MAPS, MAPS_AND_GREY, PIXELS_GREY, PIXELS_RGB

__all__ = [
    "CHANNELS",
    "INPUT_KINDS",
    "LABELS",
    "PLANES",
    "check_kinds",
    "np_planes",
    "planes",
    "select",
]

# The planes a record yields, in a fixed order: the map (nats) and the pixels (0-255).
PLANES: tuple[str, ...] = ("map", "red", "green", "blue", "grey")
CHANNELS: dict[str, tuple[str, ...]] = {
    MAPS: ("map",),
    PIXELS_GREY: ("grey",),
    PIXELS_RGB: ("red", "green", "blue"),
    MAPS_AND_GREY: ("map", "grey"),
}
# Row labels of the tables and figures.
LABELS: dict[str, str] = {
    MAPS: "LeNet on likelihood maps (the method)",
    PIXELS_GREY: "LeNet on pixels (grey)",
    PIXELS_RGB: "LeNet on pixels (RGB)",
    MAPS_AND_GREY: "LeNet on maps + pixels (grey)",
}
# ITU-R BT.601 luma, the grey of OpenCV and most image libraries.
_GREY_WEIGHTS = (0.299, 0.587, 0.114)


def check_kinds(kinds: tuple[str, ...]) -> None:
    """Raises ValueError for an unknown input kind or a list without the maps first."""
    unknown = [k for k in kinds if k not in INPUT_KINDS]
    if unknown:
        raise ValueError(
            f"Unknown detector input {', '.join(unknown)}: choose from {', '.join(INPUT_KINDS)}."
        )
    if not kinds or kinds[0] != MAPS:
        raise ValueError(
            f"The detector inputs must start with {MAPS!r} (the method; the others are its "
            f"baselines), got {', '.join(kinds) or 'none'}."
        )


def planes(loglik_map: tf.Tensor, image: tf.Tensor) -> tf.Tensor:
    """Every plane of one crop: float32 [H, W, len(PLANES)] from a map [H, W] (nats)
    and its crop uint8 [H, W, 3] (RGB)."""
    rgb = tf.cast(image, tf.float32)
    grey = tf.tensordot(rgb, tf.constant(_GREY_WEIGHTS, tf.float32), axes=[[2], [0]])
    return tf.concat([loglik_map[..., None], rgb, grey[..., None]], axis=-1)


def select(all_planes: tf.Tensor, kind: str) -> tf.Tensor:
    """The channels of `kind` from planes [..., len(PLANES)]: [..., C]."""
    return tf.gather(all_planes, [PLANES.index(c) for c in CHANNELS[kind]], axis=-1)


def np_planes(maps: np.ndarray, images: np.ndarray) -> np.ndarray:
    """NumPy `planes` of a batch: float64 [N, H, W, len(PLANES)] from maps [N, H, W]
    and crops uint8 [N, H, W, 3]."""
    rgb = images.astype(np.float64)
    grey = rgb @ np.asarray(_GREY_WEIGHTS, np.float64)
    return np.concatenate([maps[..., None].astype(np.float64), rgb, grey[..., None]], axis=-1)
