"""The face-crop TFRecord schema: writer and parser together.

One example per face crop (see design `data.md`): the 64x64x3 uint8 crop as raw
bytes, the video id (`519` or `519_515`), frame index, method (`original` or the
FF++ method name), label (0 real, 1 fake), split, compression and the square crop
box (x0, y0, x1, y1) in frame pixels. Optionally (`mask`, only where the dataset has
a manipulation mask for the frame) the manipulation mask cropped with the same box:
uint8 [S, S] raw bytes, 0 (untouched) or 255 (manipulated). An example without a
mask has no `mask` feature at all, so its bytes are those of the schema before masks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf

# Re-exported: the schema's `method` of pristine crops.
from data_prep.methods import ORIGINAL as ORIGINAL


@dataclasses.dataclass(frozen=True)
class FaceExample:
    """One face crop and where it came from. `image` is uint8 [S, S, 3] RGB."""

    image: np.ndarray
    video: str
    frame: int
    method: str
    label: int
    split: str
    compression: str
    box: tuple[int, int, int, int]
    mask: np.ndarray | None = None  # uint8 [S, S], 0 or 255; None: no mask for this frame


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _ints(values: list[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def face_features(example: FaceExample) -> dict[str, tf.train.Feature]:
    """The feature map of a face example (reused by the likelihood schema)."""
    image = np.asarray(example.image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"Face crop must be uint8 [H, W, 3], got {image.dtype} {list(image.shape)}."
        )
    features = {
        "image": _bytes(image.tobytes()),
        "image_size": _ints([image.shape[0], image.shape[1]]),
        "video": _bytes(example.video.encode()),
        "frame": _ints([int(example.frame)]),
        "method": _bytes(example.method.encode()),
        "label": _ints([int(example.label)]),
        "split": _bytes(example.split.encode()),
        "compression": _bytes(example.compression.encode()),
        "box": _ints([int(v) for v in example.box]),
    }
    if example.mask is not None:
        mask = np.asarray(example.mask)
        if mask.dtype != np.uint8 or mask.shape != image.shape[:2]:
            raise ValueError(
                f"Face mask must be uint8 {list(image.shape[:2])} like its crop, got "
                f"{mask.dtype} {list(mask.shape)}."
            )
        features["mask"] = _bytes(mask.tobytes())
    return features


def serialize_face(example: FaceExample) -> bytes:
    """Serialises one face example to a tf.train.Example string.

    Deterministic (feature map in key order), so the same crop gives the same bytes in
    every process: a resumed run writes exactly the records of an uninterrupted one.
    """
    features = tf.train.Features(feature=face_features(example))
    return tf.train.Example(features=features).SerializeToString(deterministic=True)


FACE_FEATURE_SPEC: dict[str, tf.io.FixedLenFeature] = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "image_size": tf.io.FixedLenFeature([2], tf.int64),
    "video": tf.io.FixedLenFeature([], tf.string),
    "frame": tf.io.FixedLenFeature([], tf.int64),
    "method": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "split": tf.io.FixedLenFeature([], tf.string),
    "compression": tf.io.FixedLenFeature([], tf.string),
    "box": tf.io.FixedLenFeature([4], tf.int64),
}


# The optional mask: an empty string where the example has none.
MASK_FEATURE_SPEC: dict[str, tf.io.FixedLenFeature] = {
    "mask": tf.io.FixedLenFeature([], tf.string, default_value=""),
}


def parse_face_fields(serialized: tf.Tensor, fields: Sequence[str]) -> dict[str, tf.Tensor]:
    """Only `fields` of one serialised face example, or of a batch [B] of them, raw
    (`image` bytes with `image_size`, `mask` bytes: `decode_image`, `decode_mask`).
    Pure; what a reader needs without parsing the rest.

    Raises:
      KeyError: a field the face schema does not have.
    """
    spec = {**FACE_FEATURE_SPEC, **MASK_FEATURE_SPEC}
    wanted = {name: spec[name] for name in fields}
    if serialized.shape.rank == 0:
        return tf.io.parse_single_example(serialized, wanted)
    return tf.io.parse_example(serialized, wanted)


def decode_mask(raw: tf.Tensor, crop_size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The optional mask's raw bytes ("" where absent) -> (has_mask bool [], uint8
    [crop_size, crop_size]: the mask, or zeros where absent)."""
    has_mask = tf.strings.length(raw) > 0
    mask = tf.cond(
        has_mask,
        lambda: tf.reshape(tf.io.decode_raw(raw, tf.uint8), [crop_size, crop_size]),
        lambda: tf.zeros([crop_size, crop_size], tf.uint8),
    )
    return has_mask, mask


def decode_image(raw: tf.Tensor, image_size: tf.Tensor) -> tf.Tensor:
    """Raw bytes and [2] size to a uint8 [H, W, 3] tensor."""
    image = tf.io.decode_raw(raw, tf.uint8)
    return tf.reshape(image, tf.concat([tf.cast(image_size, tf.int32), [3]], axis=0))


def parse_face(serialized: tf.Tensor, crop_size: int = 64) -> dict[str, tf.Tensor]:
    """Parses one serialised face example (pure; usable inside tf.data).

    Returns a dict with `image` uint8 [crop_size, crop_size, 3], the scalar metadata
    (`video`, `method`, `split`, `compression` strings; `frame`, `label` int64;
    `box` int64 [4]), `has_mask` bool [] and `mask` uint8 [crop_size, crop_size]
    (zeros where `has_mask` is False: fixed shapes, so examples batch).
    """
    parsed = tf.io.parse_single_example(serialized, {**FACE_FEATURE_SPEC, **MASK_FEATURE_SPEC})
    image = decode_image(parsed.pop("image"), parsed.pop("image_size"))
    parsed["image"] = tf.ensure_shape(image, [crop_size, crop_size, 3])
    parsed["has_mask"], parsed["mask"] = decode_mask(parsed.pop("mask"), crop_size)
    return parsed


def parse_face_numpy(serialized: bytes) -> FaceExample:
    """Parses one serialised face example eagerly into a FaceExample (`mask` None
    where the example has none)."""
    example = tf.train.Example.FromString(serialized)
    feature = example.features.feature
    height, width = feature["image_size"].int64_list.value
    image = np.frombuffer(feature["image"].bytes_list.value[0], np.uint8)
    mask = None
    if "mask" in feature:
        mask = np.frombuffer(feature["mask"].bytes_list.value[0], np.uint8)
        if mask.size != height * width:
            raise ValueError(
                f"Face mask holds {mask.size} bytes but its crop is {height}x{width}: the "
                "shard is corrupt; delete it and re-run prepare_faces."
            )
        mask = mask.reshape(height, width)
    return FaceExample(
        image=image.reshape(height, width, 3),
        video=feature["video"].bytes_list.value[0].decode(),
        frame=int(feature["frame"].int64_list.value[0]),
        method=feature["method"].bytes_list.value[0].decode(),
        label=int(feature["label"].int64_list.value[0]),
        split=feature["split"].bytes_list.value[0].decode(),
        compression=feature["compression"].bytes_list.value[0].decode(),
        box=tuple(int(v) for v in feature["box"].int64_list.value),
        mask=mask,
    )


def read_examples(path: str) -> Iterator[FaceExample]:
    """Every face example of one shard, decoded eagerly (`parse_face_numpy`), in order."""
    for serialized in tf.data.TFRecordDataset(path).as_numpy_iterator():
        yield parse_face_numpy(serialized)
