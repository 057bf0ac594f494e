"""Face-crop tf.data pipelines: shapes, the resumable training stream, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from data_prep import face_images, face_records
from data_prep.files import write_shard_atomically


def _write_shard(path, start: int, count: int, size: int = 16) -> None:
    rng = np.random.default_rng(start)
    examples = [
        face_records.FaceExample(
            image=rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            video=f"{start + i:03d}",
            frame=start + i,
            method=face_records.ORIGINAL,
            label=0,
            split="train",
            compression="raw",
            box=(0, 0, size, size),
        )
        for i in range(count)
    ]
    write_shard_atomically(str(path), [face_records.serialize_face(e) for e in examples])


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faces")
    for k in range(3):
        _write_shard(folder / f"train-{k}.tfrecord", start=10 * k, count=10)
    return folder


def _frames(records: tf.data.Dataset, count: int) -> list[int]:
    return [face_records.parse_face_numpy(r).frame for r in records.take(count).as_numpy_iterator()]


def test_inspect_shards_counts_and_size(shards):
    info = face_images.inspect_shards(str(shards / "*.tfrecord"), expected_size=16)
    assert info.counts == (10, 10, 10)
    assert info.num_examples == 30
    assert info.image_size == (16, 16)


def test_face_dataset_batches_uint8_and_float(shards):
    pattern = str(shards / "*.tfrecord")
    batches = list(face_images.face_dataset(pattern, 8, crop_size=16, shuffle_buffer=16, seed=1))
    assert [b.shape[0] for b in batches] == [8, 8, 8, 6]
    assert all(b.dtype == tf.uint8 and b.shape[1:] == (16, 16, 3) for b in batches)
    floats = next(iter(face_images.face_dataset(pattern, 30, crop_size=16, as_float=True)))
    assert floats.dtype == tf.float32
    assert float(tf.reduce_min(floats)) >= -1.0 and float(tf.reduce_max(floats)) <= 1.0
    # Unshuffled, every crop appears exactly once (cross-check against the raw bytes).
    raw = np.sort(np.concatenate([b.numpy() for b in batches]).reshape(30, -1), axis=0)
    unshuffled = np.sort(((floats.numpy() + 1.0) * 127.5).round().reshape(30, -1), axis=0)
    np.testing.assert_array_equal(raw, unshuffled)


def test_training_stream_epochs_and_resume(shards):
    info = face_images.inspect_shards(str(shards / "*.tfrecord"))

    def stream(start):
        return face_images.training_record_stream(
            info.paths, info.num_examples, seed=3, shuffle_buffer=8, start_example=start
        )

    order = _frames(stream(0), 90)
    # Each epoch visits every record once, each in its own order.
    epochs = [order[i : i + 30] for i in (0, 30, 60)]
    assert all(sorted(e) == list(range(30)) for e in epochs)
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]
    assert epochs[0] != list(range(30))  # shuffled
    # Starting at example 37 continues the same stream exactly.
    assert _frames(stream(37), 40) == order[37:77]
    # Another seed, another order.
    other = face_images.training_record_stream(
        info.paths, info.num_examples, seed=4, shuffle_buffer=8
    )
    assert _frames(other, 30) != epochs[0]


def test_truncated_and_corrupt_shards_are_named(tmp_path):
    _write_shard(tmp_path / "good.tfrecord", 0, 4)
    raw = (tmp_path / "good.tfrecord").read_bytes()
    (tmp_path / "cut.tfrecord").write_bytes(raw[: len(raw) - 7])
    with pytest.raises(face_images.CorruptShardError, match="cut.tfrecord"):
        face_images.inspect_shards(str(tmp_path / "cut.tfrecord"))
    flipped = bytearray(raw)
    flipped[40] ^= 0xFF  # inside the first record's payload: its CRC no longer matches
    (tmp_path / "flip.tfrecord").write_bytes(bytes(flipped))
    with pytest.raises(face_images.CorruptShardError, match="flip.tfrecord.*re-run"):
        face_images.face_dataset(str(tmp_path / "flip.tfrecord"), 2, crop_size=16)
    (tmp_path / "foreign.tfrecord").write_bytes(b"")
    with tf.io.TFRecordWriter(str(tmp_path / "foreign.tfrecord")) as writer:
        writer.write(b"not an example")
    with pytest.raises(face_images.CorruptShardError, match="not a face-crop"):
        face_images.inspect_shards(str(tmp_path / "foreign.tfrecord"))


def test_size_mismatch_and_missing_glob(tmp_path):
    _write_shard(tmp_path / "a.tfrecord", 0, 2, size=16)
    _write_shard(tmp_path / "b.tfrecord", 0, 2, size=24)
    with pytest.raises(face_images.CorruptShardError, match="b.tfrecord holds 24x24"):
        face_images.inspect_shards(str(tmp_path / "*.tfrecord"))
    with pytest.raises(face_images.CorruptShardError, match="64x64 were expected"):
        face_images.inspect_shards(str(tmp_path / "a.tfrecord"), expected_size=64)
    with pytest.raises(FileNotFoundError, match="No TFRecord shards match"):
        face_images.face_dataset(str(tmp_path / "none-*.tfrecord"), 2)


def test_validation_images_whole_split_or_fixed_spread_sample(shards):
    info = face_images.inspect_shards(str(shards / "*.tfrecord"))
    records = tf.data.TFRecordDataset(list(info.paths)).as_numpy_iterator()
    index_of = {face_records.parse_face_numpy(r).image.tobytes(): i for i, r in enumerate(records)}

    def indices(dataset):
        images = np.concatenate([b.numpy() for b in dataset])
        return [index_of[image.tobytes()] for image in images]

    whole, count = face_images.validation_images(info, 8, crop_size=16)
    assert count == 30 and indices(whole) == list(range(30))
    same, count = face_images.validation_images(info, 8, crop_size=16, sample_size=99)
    assert count == 30 and indices(same) == list(range(30))

    sample, count = face_images.validation_images(info, 4, crop_size=16, sample_size=9, seed=5)
    picked = indices(sample)
    assert count == 9 and len(set(picked)) == 9 and [b.shape[0] for b in sample] == [4, 4, 1]
    # Drawn over the whole split (all three shards), not its first records...
    assert {i // 10 for i in picked} == {0, 1, 2}
    # ...and the same images at every evaluation and for the same seed.
    assert indices(sample) == picked
    again, _ = face_images.validation_images(info, 4, crop_size=16, sample_size=9, seed=5)
    assert indices(again) == picked
    other, _ = face_images.validation_images(info, 4, crop_size=16, sample_size=9, seed=6)
    assert indices(other) != picked
