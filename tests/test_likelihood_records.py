"""The likelihood-map schema: round trips (eager and tf.data) and bad maps."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from likelihood_helpers import FACE_METADATA_FIELDS

from data_prep import files, likelihood_records
from data_prep.face_records import FaceExample


def _face(rng: np.random.Generator, size: int = 64) -> FaceExample:
    return FaceExample(
        image=rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        video="519_515",
        frame=42,
        method="Face2Face",
        label=1,
        split="val",
        compression="c23",
        box=(3, 4, 103, 104),
    )


def test_round_trip_eager_and_tf_data(tmp_path, rng):
    faces = [_face(rng) for _ in range(3)]
    maps = [rng.normal(-4, 2, (64, 64)).astype(np.float32) for _ in faces]
    records = [
        likelihood_records.serialize_likelihood(f, m, float(m.sum()))
        for f, m in zip(faces, maps, strict=True)
    ]
    path = str(tmp_path / "val" / "Face2Face" / "519_515.tfrecord")
    assert files.write_shard_atomically(path, records) == 3

    eager = likelihood_records.parse_likelihood_numpy(records[1])
    np.testing.assert_array_equal(eager.loglik_map, maps[1])
    np.testing.assert_array_equal(eager.face.image, faces[1].image)
    assert eager.image_loglik == pytest.approx(float(maps[1].sum()), rel=1e-6)
    for field in FACE_METADATA_FIELDS:
        assert getattr(eager.face, field) == getattr(faces[1], field)

    dataset = tf.data.TFRecordDataset(path).map(likelihood_records.parse_likelihood)
    parsed = list(dataset.as_numpy_iterator())
    assert len(parsed) == 3
    for p, f, m in zip(parsed, faces, maps, strict=True):
        np.testing.assert_array_equal(p["loglik_map"], m)
        np.testing.assert_array_equal(p["image"], f.image)
        assert p["loglik_map"].dtype == np.float32
        assert p["video"] == b"519_515" and p["method"] == b"Face2Face"
        assert p["frame"] == 42 and p["label"] == 1 and p["split"] == b"val"
        assert p["compression"] == b"c23"
        assert list(p["box"]) == [3, 4, 103, 104]
        assert p["image_loglik"] == pytest.approx(float(m.sum()), rel=1e-6)
    assert dataset.element_spec["loglik_map"].shape == (64, 64)


def test_map_of_wrong_size_is_refused(rng):
    with pytest.raises(ValueError, match="one value per crop pixel"):
        likelihood_records.serialize_likelihood(_face(rng), np.zeros((32, 32), np.float32), 0.0)


def test_non_finite_map_is_refused(rng):
    bad = np.zeros((64, 64), np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        likelihood_records.serialize_likelihood(_face(rng), bad, 0.0)


def test_corrupt_map_bytes_are_reported():
    with pytest.raises(ValueError, match="corrupt"):
        likelihood_records.map_from_bytes(b"\x00" * 12, (64, 64))


def test_the_optional_mask_round_trips_eager_and_tf_data(tmp_path, rng):
    mask = np.where(rng.random((64, 64)) < 0.4, 255, 0).astype(np.uint8)
    faces = [dataclasses.replace(_face(rng), mask=mask), _face(rng)]  # with and without
    maps = [rng.normal(-4, 2, (64, 64)).astype(np.float32) for _ in faces]
    records = [
        likelihood_records.serialize_likelihood(f, m, float(m.sum()))
        for f, m in zip(faces, maps, strict=True)
    ]
    path = str(tmp_path / "val" / "Face2Face" / "519_515.tfrecord")
    files.write_shard_atomically(path, records)
    with_mask, without = (likelihood_records.parse_likelihood_numpy(r) for r in records)
    assert np.array_equal(with_mask.face.mask, mask) and without.face.mask is None
    parsed = list(
        tf.data.TFRecordDataset(path).map(likelihood_records.parse_likelihood).as_numpy_iterator()
    )
    assert [bool(p["has_mask"]) for p in parsed] == [True, False]
    np.testing.assert_array_equal(parsed[0]["mask"], mask)
    np.testing.assert_array_equal(parsed[1]["mask"], np.zeros((64, 64), np.uint8))
    np.testing.assert_array_equal(parsed[0]["loglik_map"], maps[0])
    # The map readers' specs are unchanged: they neither need nor return the mask.
    assert "mask" not in likelihood_records.parse_map_features(tf.constant(records[0]))
