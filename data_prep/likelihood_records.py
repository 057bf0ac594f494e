"""The likelihood-map TFRecord schema: its writer, parsers and the one reader of its shards.

One example per face crop (design `data.md`): every feature of the face-crop schema
(`face_records.face_features`: image, video, frame, method, label, split,
compression, box, and the optional manipulation `mask`, kept byte for byte where the
face example has one) plus the UBM's per-pixel conditional log-likelihood map
`log p(x_i | x_<i)` (float32 [H, W], nats, RGB joint, as raw little-endian bytes with
its size) and the image log-likelihood (the map's sum, nats). These maps are the
feature of Khodabakhsh & Busch (BIOSIG 2020) that the LeNet-style detector reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf

from data_prep import face_records
from data_prep.face_records import FaceExample

_MAP_DTYPE = np.dtype("<f4")  # explicit byte order: shards are portable across machines


@dataclasses.dataclass(frozen=True)
class LikelihoodExample:
    """A face crop with its likelihood map. `loglik_map` is float32 [H, W] nats."""

    face: FaceExample
    loglik_map: np.ndarray
    image_loglik: float


def _floats(values: list[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def serialize_likelihood(face: FaceExample, loglik_map: np.ndarray, image_loglik: float) -> bytes:
    """Serialises a face crop and its [H, W] log-likelihood map to a tf.train.Example.

    Raises:
      ValueError: the map is not 2-D, its size differs from the crop's, or it holds
        non-finite values.
    """
    loglik_map = np.asarray(loglik_map)
    height, width = np.asarray(face.image).shape[:2]
    if loglik_map.ndim != 2 or loglik_map.shape != (height, width):
        raise ValueError(
            f"Likelihood map of {face.method}/{face.video} frame {face.frame} has shape "
            f"{list(loglik_map.shape)}, but its face crop is {height}x{width}: the map must "
            "have one value per crop pixel."
        )
    if not np.all(np.isfinite(loglik_map)) or not np.isfinite(image_loglik):
        raise ValueError(
            f"Likelihood map of {face.method}/{face.video} frame {face.frame} holds "
            "non-finite values: the UBM produced NaN/inf; check its checkpoint."
        )
    features = face_records.face_features(face)
    features["loglik_map"] = tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[loglik_map.astype(_MAP_DTYPE).tobytes()])
    )
    features["map_size"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[height, width]))
    features["image_loglik"] = _floats([float(image_loglik)])
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


# The face-crop features a reader of maps can leave out: the crop itself.
IMAGE_FIELDS: tuple[str, ...] = ("image", "image_size")
# The image log-likelihood and the map size alone: enough for summaries and histograms.
IMAGE_LOGLIK_FIELDS: tuple[str, ...] = ("image_loglik", "map_size")

LIKELIHOOD_FEATURE_SPEC: dict[str, tf.io.FixedLenFeature] = {
    **face_records.FACE_FEATURE_SPEC,
    "loglik_map": tf.io.FixedLenFeature([], tf.string),
    "map_size": tf.io.FixedLenFeature([2], tf.int64),
    "image_loglik": tf.io.FixedLenFeature([], tf.float32),
}

# Everything but the image: what the detector needs, cheaper to parse in bulk.
MAP_FEATURE_SPEC: dict[str, tf.io.FixedLenFeature] = {
    k: v for k, v in LIKELIHOOD_FEATURE_SPEC.items() if k not in IMAGE_FIELDS
}


def decode_map(raw: tf.Tensor, map_size: tf.Tensor) -> tf.Tensor:
    """Raw little-endian float32 bytes and a [2] size to a float32 [H, W] tensor."""
    values = tf.io.decode_raw(raw, tf.float32, little_endian=True)
    return tf.reshape(values, tf.cast(map_size, tf.int32))


def parse_likelihood(serialized: tf.Tensor, crop_size: int = 64) -> dict[str, tf.Tensor]:
    """Parses one serialised likelihood example (pure; usable inside tf.data).

    Returns the face-crop keys of `face_records.parse_face` (`image` uint8
    [crop_size, crop_size, 3], `video`, `frame`, `method`, `label`, `split`,
    `compression`, `box`, `has_mask` bool [] and `mask` uint8 [crop_size, crop_size],
    zeros where `has_mask` is False) plus `loglik_map` float32 [crop_size, crop_size]
    and `image_loglik` float32 [].
    """
    parsed = tf.io.parse_single_example(
        serialized, {**LIKELIHOOD_FEATURE_SPEC, **face_records.MASK_FEATURE_SPEC}
    )
    image = face_records.decode_image(parsed.pop("image"), parsed.pop("image_size"))
    parsed["image"] = tf.ensure_shape(image, [crop_size, crop_size, 3])
    parsed["has_mask"], parsed["mask"] = face_records.decode_mask(parsed.pop("mask"), crop_size)
    loglik_map = decode_map(parsed.pop("loglik_map"), parsed.pop("map_size"))
    parsed["loglik_map"] = tf.ensure_shape(loglik_map, [crop_size, crop_size])
    return parsed


def parse_map_features(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses everything but the image, leaving the map undecoded (pure).

    Returns `loglik_map` as a raw bytes scalar and `map_size` int64 [2], so a reader
    can check map sizes itself and say which shard is inconsistent, plus the scalar
    metadata and `image_loglik`. Batchable whatever the map sizes.
    """
    return tf.io.parse_single_example(serialized, MAP_FEATURE_SPEC)


def parse_fields(serialized: tf.Tensor, fields: Sequence[str]) -> dict[str, tf.Tensor]:
    """Only `fields` of one serialised likelihood example (any of the face schema's,
    `mask` included, and `loglik_map`, `map_size`, `image_loglik`), raw: decode with
    `decode_map`, `face_records.decode_image` / `decode_mask`. Pure; batchable.

    Raises:
      KeyError: a field the schema does not have.
    """
    spec = {**LIKELIHOOD_FEATURE_SPEC, **face_records.MASK_FEATURE_SPEC}
    return tf.io.parse_single_example(serialized, {name: spec[name] for name in fields})


def map_from_bytes(raw: bytes, map_size: tuple[int, int]) -> np.ndarray:
    """The eager counterpart of `decode_map`: float32 [H, W] from raw bytes."""
    values = np.frombuffer(raw, _MAP_DTYPE)
    height, width = (int(v) for v in map_size)
    if values.size != height * width:
        raise ValueError(
            f"Likelihood map holds {values.size} values but claims size {height}x{width}: "
            "the shard is corrupt; delete it and re-run extract_likelihoods."
        )
    return values.reshape(height, width).astype(np.float32)


def parse_likelihood_numpy(serialized: bytes) -> LikelihoodExample:
    """Parses one serialised likelihood example eagerly (`face.mask` None where the
    example has no mask)."""
    face = face_records.parse_face_numpy(serialized)
    feature = tf.train.Example.FromString(serialized).features.feature
    loglik_map = map_from_bytes(
        feature["loglik_map"].bytes_list.value[0], tuple(feature["map_size"].int64_list.value)
    )
    return LikelihoodExample(
        face=face,
        loglik_map=loglik_map,
        image_loglik=float(feature["image_loglik"].float_list.value[0]),
    )


def read_records(
    shards: Sequence[str] | tf.data.Dataset, fields: Sequence[str] = tuple(MAP_FEATURE_SPEC)
) -> tf.data.Dataset:
    """The one reader of likelihood shards: their records in order, `fields` parsed raw.

    Args:
      shards: shard paths, read one after the other; or a dataset of serialised
        records (e.g. shards interleaved for training).
      fields: what to parse (`parse_fields`); by default everything but the crop. Decode
        `loglik_map` with `decode_map`, `image` with `face_records.decode_image`.

    Returns:
      A dataset of dicts {field: tensor}, one per record, in file order (parsed in
      parallel, order kept).
    """
    records = shards if isinstance(shards, tf.data.Dataset) else tf.data.TFRecordDataset(shards)
    fields = tuple(fields)
    return records.map(
        lambda serialized: parse_fields(serialized, fields),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def read_examples(path: str) -> Iterator[LikelihoodExample]:
    """Every record of one shard, decoded eagerly (`parse_likelihood_numpy`), in order."""
    for serialized in tf.data.TFRecordDataset(path).as_numpy_iterator():
        yield parse_likelihood_numpy(serialized)
