"""tf.data datasets of face images over face-crop TFRecord shards (schema: `face_records`).

The UBM's training and evaluation data (Khodabakhsh & Busch, BIOSIG 2020, Sec. 3:
pristine training crops). Training reads only these shards (design `architecture.md`,
convention 5). Shards are checked up front (`inspect_shards`) so that a corrupt file or
a crop of the wrong size fails with an error naming the file, before any training step
runs, rather than as an anonymous `DataLossError` deep inside an iterator.

The training stream (`training_record_stream`, `training_images`) is a pure function
of (seed, position): epoch `e` visits every record once in an order fixed by (`seed`,
`e`), and a run resumed at step `s` skips exactly the `s * global_batch` records
already consumed, so an interrupted run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from data_prep import face_records
from data_prep.files import list_shards

AUTOTUNE = tf.data.AUTOTUNE
# Shards read at once; fixed (not AUTOTUNE) so the interleaved order is reproducible.
_CYCLE_LENGTH = 8


class CorruptShardError(ValueError):
    """A TFRecord shard cannot be read or holds records of the wrong form."""


@dataclasses.dataclass(frozen=True)
class ShardInfo:
    """What `inspect_shards` found: the shard paths, their record counts, crop size."""

    paths: tuple[str, ...]
    counts: tuple[int, ...]
    image_size: tuple[int, int]

    @property
    def num_examples(self) -> int:
        return int(sum(self.counts))


def resolve_shards(pattern: str | Sequence[str]) -> list[str]:
    """A glob pattern or an explicit list of paths to a sorted list of shard paths.

    Raises:
      FileNotFoundError: the pattern matches nothing, or a listed file is missing.
    """
    if isinstance(pattern, str):
        return list_shards(pattern)
    paths = [str(p) for p in pattern]
    if not paths:
        raise FileNotFoundError("No TFRecord shards given: pass a glob or a non-empty list.")
    missing = [p for p in paths if not tf.io.gfile.exists(p)]
    if missing:
        raise FileNotFoundError(f"TFRecord shard(s) not found: {', '.join(missing[:5])}")
    return paths


# Framing of one TFRecord: uint64 length, uint32 CRC of it, payload, uint32 CRC.
_RECORD_OVERHEAD = 16


def _count_and_first(path: str) -> tuple[int, bytes | None]:
    """Reads a whole shard (CRC-checked in C++); returns its count and first record.

    The TFRecord reader takes a file cut between two records for a clean end, so the
    framed size of the records read is also compared with the file size.
    """
    dataset = tf.data.TFRecordDataset(path)
    first = None
    try:
        for record in dataset.take(1):
            first = record.numpy()
        count, size = dataset.reduce(
            (tf.constant(0, tf.int64), tf.constant(0, tf.int64)),
            lambda acc, r: (acc[0] + 1, acc[1] + tf.cast(tf.strings.length(r), tf.int64)),
        )
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
        raise CorruptShardError(
            f"Corrupt or truncated TFRecord shard {path}: {_short_message(err)}. "
            "Delete it and re-run the stage that wrote it."
        ) from None
    count = int(count)
    file_size = tf.io.gfile.stat(path).length
    if int(size) + _RECORD_OVERHEAD * count != file_size:
        raise CorruptShardError(
            f"Truncated TFRecord shard {path}: {count} whole records take "
            f"{int(size) + _RECORD_OVERHEAD * count} of its {file_size} bytes. Delete it and "
            "re-run the stage that wrote it."
        )
    return count, first


def _count_all(paths: Sequence[str]) -> list[tuple[int, bytes | None]]:
    """`_count_and_first` of every shard in one tf.data pass (CRC-checked in C++).

    Datasets of face crops hold one shard per crop: opening one dataset per shard
    costs tens of milliseconds each, minutes for a set of ten thousand crops, where
    one interleaved pass takes seconds. Any read error falls back to the shard by
    shard check, which names the file.
    """
    files = tf.data.Dataset.from_tensor_slices(list(paths)).enumerate()

    def records(index: tf.Tensor, path: tf.Tensor) -> tf.data.Dataset:
        return (
            tf.data.TFRecordDataset(path)
            .enumerate()
            .map(
                lambda j, r: (
                    index,
                    tf.cast(tf.strings.length(r), tf.int64),
                    tf.where(tf.equal(j, 0), r, tf.constant(b"")),
                )
            )
        )

    stream = files.interleave(
        records, cycle_length=16, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False
    )
    counts = np.zeros(len(paths), np.int64)
    sizes = np.zeros(len(paths), np.int64)
    firsts: list[bytes | None] = [None] * len(paths)
    try:
        for index, length, first in stream.batch(4096).as_numpy_iterator():
            np.add.at(counts, index, 1)
            np.add.at(sizes, index, length)
            for k in np.nonzero(length * (np.char.str_len(first.astype(bytes)) > 0))[0]:
                firsts[int(index[k])] = first[k]
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError):
        return [_count_and_first(path) for path in paths]
    for path, count, size in zip(paths, counts, sizes, strict=True):
        file_size = os.path.getsize(path)
        if int(size) + _RECORD_OVERHEAD * int(count) != file_size:
            return [_count_and_first(path) for path in paths]  # names the shard
    return [(int(c), f) for c, f in zip(counts, firsts, strict=True)]


def _short_message(err: tf.errors.OpError) -> str:
    """The useful part of a TF runtime error (no function-node or op decorations)."""
    text = err.message.splitlines()[0] if err.message else type(err).__name__
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:[^\]]*\].*$", "", text).strip()


def inspect_shards(pattern: str | Sequence[str], expected_size: int | None = None) -> ShardInfo:
    """Checks that every shard reads end to end and holds face crops of one size.

    Args:
      pattern: glob pattern or list of shard paths.
      expected_size: if given, every crop must be `expected_size` square.

    Returns:
      ShardInfo with the paths, per-shard record counts and the crop size (H, W).

    Raises:
      FileNotFoundError: no shard matches.
      CorruptShardError: a shard is truncated/corrupt, is not a face-crop shard, or
        holds crops of another size; the message names the file.
    """
    paths = resolve_shards(pattern)
    counts: list[int] = []
    size: tuple[int, int] | None = None
    try:
        read = _count_all(paths)
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
        raise CorruptShardError(
            f"Corrupt or truncated TFRecord shard: {_short_message(err)}. Delete it and "
            "re-run the stage that wrote it."
        ) from None
    for path, (count, first) in zip(paths, read, strict=True):
        counts.append(count)
        if first is None:
            logging.warning("Shard %s holds no records.", path)
            continue
        try:
            example = face_records.parse_face_numpy(first)
        except Exception as err:  # noqa: BLE001 - any parse failure means a foreign file
            raise CorruptShardError(
                f"{path} is not a face-crop TFRecord shard ({type(err).__name__}: {err})."
            ) from None
        shard_size = tuple(example.image.shape[:2])
        if size is None:
            size = shard_size
        if shard_size != size:
            raise CorruptShardError(
                f"{path} holds {shard_size[0]}x{shard_size[1]} crops, but {paths[0]} holds "
                f"{size[0]}x{size[1]}: all shards must hold crops of one size."
            )
        if expected_size is not None and shard_size != (expected_size, expected_size):
            raise CorruptShardError(
                f"{path} holds {shard_size[0]}x{shard_size[1]} crops, but "
                f"{expected_size}x{expected_size} were expected: set the image size to "
                "match the crops, or re-run prepare_faces with that crop size."
            )
    if size is None:
        raise CorruptShardError(f"The shards {paths[:3]}... hold no records at all.")
    return ShardInfo(paths=tuple(paths), counts=tuple(counts), image_size=size)


def _parse_image(crop_size: int, as_float: bool):
    def parse(serialized: tf.Tensor) -> tf.Tensor:
        image = face_records.parse_face(serialized, crop_size)["image"]
        if as_float:
            return tf.cast(image, tf.float32) / 127.5 - 1.0
        return image

    return parse


def _epoch_records(
    paths: Sequence[str], seed: int, epoch: tf.Tensor, shuffle_buffer: int
) -> tf.data.Dataset:
    """One epoch of serialised records in an order fixed by (seed, epoch).

    Stateless shuffles only (independent of TF's global seed): the shard order is
    permuted, shards are interleaved, and each run of `shuffle_buffer` consecutive
    records is permuted as one block.
    """
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    files = tf.random.experimental.stateless_shuffle(tf.constant(list(paths)), seed=key)
    records = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(_CYCLE_LENGTH, len(paths)),
        block_length=1,
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )
    if shuffle_buffer <= 1:
        return records

    def permute(index: tf.Tensor, block: tf.Tensor) -> tf.Tensor:
        block_key = tf.random.experimental.stateless_fold_in(key, index)
        return tf.random.experimental.stateless_shuffle(block, seed=block_key)

    blocks = records.batch(shuffle_buffer).enumerate().map(permute)
    return blocks.unbatch()


def face_dataset(
    pattern: str | Sequence[str],
    batch_size: int,
    *,
    crop_size: int = 64,
    shuffle_buffer: int = 0,
    seed: int | None = None,
    repeat: bool = False,
    drop_remainder: bool = False,
    as_float: bool = False,
    validate: bool = True,
) -> tf.data.Dataset:
    """Batches of face crops from TFRecord shards.

    Args:
      pattern: glob pattern or list of shard paths.
      batch_size: images per batch.
      crop_size: side of the square crops the shards hold.
      shuffle_buffer: records in the shuffle buffer (0 = file order).
      seed: shuffle seed (reshuffled per epoch when `repeat`).
      repeat: cycle forever.
      drop_remainder: drop a last partial batch (static batch dimension).
      as_float: yield float32 in [-1, 1] instead of uint8.
      validate: read every shard once up front (`inspect_shards`) for clear errors.

    Returns:
      A dataset of uint8 [B, crop_size, crop_size, 3] (or float32 in [-1, 1]).
    """
    paths = resolve_shards(pattern)
    if validate:
        inspect_shards(paths, expected_size=crop_size)
    files = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle_buffer > 0:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    records = files.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(_CYCLE_LENGTH, len(paths)),
        num_parallel_calls=AUTOTUNE,
        deterministic=seed is not None or shuffle_buffer == 0,
    )
    if shuffle_buffer > 0:
        records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        records = records.repeat()
    images = records.map(_parse_image(crop_size, as_float), num_parallel_calls=AUTOTUNE)
    return images.batch(batch_size, drop_remainder=drop_remainder).prefetch(AUTOTUNE)


def training_record_stream(
    paths: Sequence[str],
    num_examples: int,
    *,
    seed: int,
    shuffle_buffer: int,
    start_example: int = 0,
) -> tf.data.Dataset:
    """The endless, resumable stream of serialised training records.

    Epoch `e` is every record once, in an order fixed by (`seed`, `e`) through
    stateless shuffles (see `_epoch_records`); the stream starts
    at global example index `start_example` (e.g. `step * global_batch` on resume),
    skipping records without parsing them.

    Args:
      paths: shard paths.
      num_examples: records in all shards together (from `inspect_shards`).
      seed: base shuffle seed.
      shuffle_buffer: records permuted together (0 or 1 = shard order, interleaved).
      start_example: index in the endless stream of the first record to yield.

    Returns:
      A dataset of scalar tf.string records.
    """
    if num_examples <= 0:
        raise ValueError("The training shards hold no records.")
    first_epoch, offset = divmod(int(start_example), int(num_examples))
    paths = list(paths)
    stream = tf.data.Dataset.range(first_epoch, 2**62).flat_map(
        lambda epoch: _epoch_records(paths, seed, epoch, shuffle_buffer)
    )
    return stream.skip(offset)


def training_images(
    paths: Sequence[str],
    num_examples: int,
    *,
    seed: int,
    shuffle_buffer: int,
    crop_size: int = 64,
    start_example: int = 0,
) -> tf.data.Dataset:
    """The endless, resumable stream of training images, one by one (not batched).

    `training_record_stream` parsed: the same order, from global example index
    `start_example` on.

    Returns:
      A dataset of uint8 [crop_size, crop_size, 3].
    """
    records = training_record_stream(
        paths, num_examples, seed=seed, shuffle_buffer=shuffle_buffer, start_example=start_example
    )
    return records.map(_parse_image(crop_size, False), num_parallel_calls=AUTOTUNE)


def parse_images(
    records: tf.data.Dataset,
    batch_size: int,
    *,
    crop_size: int = 64,
    drop_remainder: bool = True,
    as_float: bool = False,
) -> tf.data.Dataset:
    """Parses and batches a stream of serialised face records (uint8 or [-1, 1] float)."""
    images = records.map(_parse_image(crop_size, as_float), num_parallel_calls=AUTOTUNE)
    return images.batch(batch_size, drop_remainder=drop_remainder).prefetch(AUTOTUNE)


def validation_images(
    info: ShardInfo,
    batch_size: int,
    *,
    crop_size: int = 64,
    sample_size: int = 0,
    seed: int = 0,
) -> tuple[tf.data.Dataset, int]:
    """Validation batches: the whole split, or a fixed random sample of it.

    The records are numbered in file order over all shards (`info.paths`, from
    `inspect_shards`); the sample is `sample_size` of those numbers drawn without
    replacement by `seed`, so every evaluation (and every resumed run) scores the same
    images, spread over the whole split rather than its first shards. Reading a sample
    goes through every shard once (skipped records are not parsed); the sample is then
    cached, so memory is bounded by `sample_size` crops, not by the split.

    Args:
      info: the validation shards.
      batch_size: images per batch (the last batch may be smaller).
      crop_size: side of the square crops.
      sample_size: images to evaluate; 0, or at least the split, means all of them.
      seed: the sample's seed.

    Returns:
      (dataset of uint8 [B, crop_size, crop_size, 3], number of images it yields).
    """
    total = info.num_examples
    records = tf.data.TFRecordDataset(list(info.paths))
    if 0 < sample_size < total:
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(total, size=sample_size, replace=False)).astype(np.int64)
        sample = tf.constant(chosen)

        def picked(index: tf.Tensor, _: tf.Tensor) -> tf.Tensor:
            at = tf.searchsorted(sample, tf.reshape(index, [1]))[0]
            return tf.logical_and(
                at < sample_size, tf.gather(sample, tf.minimum(at, sample_size - 1)) == index
            )

        records = records.enumerate().filter(picked).map(lambda _, record: record)
        images = records.map(_parse_image(crop_size, False), num_parallel_calls=AUTOTUNE)
        return images.cache().batch(batch_size).prefetch(AUTOTUNE), int(sample_size)
    images = records.map(_parse_image(crop_size, False), num_parallel_calls=AUTOTUNE)
    return images.batch(batch_size).prefetch(AUTOTUNE), int(total)
