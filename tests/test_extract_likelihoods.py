"""The extract_likelihoods stage: shards mirror the faces, keep every feature, resume,
skip bad shards, and refuse bad inputs with clear messages.

A stand-in likelihood function (a fixed function of the pixels) replaces the UBM
here; the chained pipeline test runs the real one.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
from likelihood_helpers import FACE_METADATA_FIELDS

from data_prep import face_records, files, likelihood_records
from experiments.configs import load_config
from experiments.pipeline import likelihoods as likelihood_extraction
from experiments.pipeline.workdir import Workdir


def _faces_tree(root: str, rng, videos: dict[tuple[str, str], int]) -> None:
    for (split, source), n_frames in videos.items():
        video = "007" if source == "original" else "007_009"
        faces = [
            face_records.FaceExample(
                image=rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
                video=video,
                frame=3 * i,
                method=source,
                label=int(source != "original"),
                split=split,
                compression="raw",
                box=(1, 2, 3 + i, 4 + i),
            )
            for i in range(n_frames)
        ]
        path = os.path.join(root, split, source, f"{video}.tfrecord")
        files.write_shard_atomically(path, [face_records.serialize_face(f) for f in faces])


def stand_in(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    maps = -images.astype(np.float32).mean(axis=-1) / 32.0
    return maps, maps.sum(axis=(1, 2))


VIDEOS = {("train", "original"): 5, ("train", "Deepfakes"): 4, ("test", "FaceSwap"): 3}


def test_shards_mirror_faces_and_keep_every_feature(tmp_path, rng):
    faces_dir, out_dir = str(tmp_path / "faces"), str(tmp_path / "likelihoods")
    _faces_tree(faces_dir, rng, VIDEOS)
    tasks = likelihood_extraction.plan_shards(faces_dir, out_dir)
    calls = []

    def counting(images):
        calls.append(len(images))
        return stand_in(images)

    stats = likelihood_extraction.extract_all(tasks, counting, batch_size=6)
    assert stats["written"] == 3 and stats["frames_written"] == 12 and not stats["bad_shards"]
    assert calls == [6, 6]  # full batches across videos (3 + 3 | 1 + 5), none padded
    for (split, source), n in VIDEOS.items():
        video = "007" if source == "original" else "007_009"
        face_path = os.path.join(faces_dir, split, source, f"{video}.tfrecord")
        lik_path = os.path.join(out_dir, split, source, f"{video}.tfrecord")
        faces = likelihood_extraction.read_faces(face_path)
        liks = [
            likelihood_records.parse_likelihood_numpy(r.numpy())
            for r in tf.data.TFRecordDataset(lik_path)
        ]
        assert len(liks) == n
        for face, lik in zip(faces, liks, strict=True):
            np.testing.assert_array_equal(lik.face.image, face.image)
            for field in FACE_METADATA_FIELDS:
                assert getattr(lik.face, field) == getattr(face, field)
            expected_map, expected_ll = stand_in(face.image[None])
            np.testing.assert_allclose(lik.loglik_map, expected_map[0], rtol=1e-6)
            assert lik.image_loglik == pytest.approx(float(expected_ll[0]), rel=1e-5)
    summary = likelihood_extraction.summarize(out_dir)
    assert summary["train"]["original"]["frames"] == 5
    assert summary["test"]["FaceSwap"]["videos"] == 1


def test_resume_skips_finished_videos(tmp_path, rng):
    faces_dir, out_dir = str(tmp_path / "faces"), str(tmp_path / "likelihoods")
    _faces_tree(faces_dir, rng, VIDEOS)
    tasks = likelihood_extraction.plan_shards(faces_dir, out_dir)
    likelihood_extraction.extract_all(tasks[:1], stand_in)
    first = tasks[0].output_shard
    before = os.stat(first).st_mtime_ns
    # A half-written shard of an interrupted run is a .tmp file: never taken as done.
    os.makedirs(os.path.dirname(tasks[1].output_shard))
    with open(tasks[1].output_shard + ".tmp", "wb") as f:
        f.write(b"partial")
    stats = likelihood_extraction.extract_all(tasks, stand_in)
    assert stats["skipped_complete"] == 1 and stats["written"] == 2
    assert os.stat(first).st_mtime_ns == before
    assert sum(1 for _ in tf.data.TFRecordDataset(tasks[1].output_shard)) == 4
    counts = likelihood_extraction.summarize(out_dir)
    assert sum(v["frames"] for s in counts.values() for v in s.values()) == 12


def test_bad_face_shard_is_logged_counted_and_skipped(tmp_path, rng):
    faces_dir, out_dir = str(tmp_path / "faces"), str(tmp_path / "likelihoods")
    _faces_tree(faces_dir, rng, VIDEOS)
    bad = os.path.join(faces_dir, "val", "original", "666.tfrecord")
    os.makedirs(os.path.dirname(bad))
    with open(bad, "wb") as f:
        f.write(b"this is not a TFRecord file at all")
    tasks = likelihood_extraction.plan_shards(faces_dir, out_dir)
    stats = likelihood_extraction.extract_all(tasks, stand_in)
    assert [b["shard"] for b in stats["bad_shards"]] == [bad]
    assert stats["written"] == 3
    assert not os.path.exists(os.path.join(out_dir, "val", "original", "666.tfrecord"))


def test_wrong_map_shape_from_the_model_is_a_clear_error(tmp_path, rng):
    faces_dir, out_dir = str(tmp_path / "faces"), str(tmp_path / "likelihoods")
    _faces_tree(faces_dir, rng, {("train", "original"): 2})
    tasks = likelihood_extraction.plan_shards(faces_dir, out_dir)

    def half_size(images):
        maps, lls = stand_in(images)
        return maps[:, ::2, ::2], lls

    with pytest.raises(ValueError, match=r"expected \[2, 64, 64\]"):
        likelihood_extraction.extract_all(tasks, half_size)


def test_empty_faces_folder_is_a_clear_error(tmp_path):
    (tmp_path / "faces").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no face shards.*prepare_faces"):
        likelihood_extraction.plan_shards(str(tmp_path / "faces"), str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match="does not exist.*prepare_faces"):
        likelihood_extraction.plan_shards(str(tmp_path / "nope"), str(tmp_path / "out"))


def test_missing_ubm_folder_is_a_clear_error(tmp_path, rng):
    _faces_tree(str(tmp_path / "faces"), rng, {("train", "original"): 1})
    with pytest.raises(FileNotFoundError, match="UBM folder.*train_ubm"):
        likelihood_extraction.extract_likelihoods(
            load_config("smoke"),
            Workdir(str(tmp_path / "work")),
            ubm_dir=str(tmp_path / "no_ubm"),
            faces_dir=str(tmp_path / "faces"),
        )


def test_maps_of_another_ubm_are_not_mixed(tmp_path):
    out = str(tmp_path / "likelihoods")
    likelihood_extraction.prepare_output(out, {"ubm_fingerprint": "aaaa"})
    likelihood_extraction.prepare_output(out, {"ubm_fingerprint": "aaaa"})  # same UBM: fine
    with pytest.raises(ValueError, match="another UBM"):
        likelihood_extraction.prepare_output(out, {"ubm_fingerprint": "bbbb"})


def test_ubm_folder_without_checkpoint_is_a_clear_error(tmp_path, rng):
    _faces_tree(str(tmp_path / "faces"), rng, {("train", "original"): 1})
    (tmp_path / "ubm").mkdir()
    with pytest.raises(FileNotFoundError, match="train_ubm"):
        likelihood_extraction.extract_likelihoods(
            load_config("smoke"),
            Workdir(str(tmp_path / "work")),
            ubm_dir=str(tmp_path / "ubm"),
            faces_dir=str(tmp_path / "faces"),
        )
    assert not os.path.exists(tmp_path / "work" / "likelihoods" / "train")


def test_last_batch_holds_the_remainder_and_empty_videos_are_written(tmp_path, rng):
    faces_dir, out_dir = str(tmp_path / "faces"), str(tmp_path / "likelihoods")
    _faces_tree(faces_dir, rng, {**VIDEOS, ("val", "original"): 0})
    calls = []

    def counting(images):
        calls.append(len(images))
        return stand_in(images)

    tasks = likelihood_extraction.plan_shards(faces_dir, out_dir)
    stats = likelihood_extraction.extract_all(tasks, counting, batch_size=5)
    assert calls == [5, 5, 2] and stats["written"] == 4 and stats["frames_written"] == 12
    empty = os.path.join(out_dir, "val", "original", "007.tfrecord")
    assert os.path.exists(empty) and sum(1 for _ in tf.data.TFRecordDataset(empty)) == 0


def test_manipulation_masks_are_carried_byte_for_byte(tmp_path, rng):
    faces_dir, out_dir = str(tmp_path / "faces"), str(tmp_path / "likelihoods")
    masks = [np.where(rng.random((64, 64)) < 0.3, 255, 0).astype(np.uint8) for _ in range(3)]
    faces = [
        face_records.FaceExample(
            image=rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
            video="007_009",
            frame=i,
            method="Deepfakes",
            label=1,
            split="train",
            compression="raw",
            box=(1, 2, 3, 4),
            mask=mask,
        )
        for i, mask in enumerate([masks[0], None, masks[1], masks[2]])  # frame 1: no mask
    ]
    face_path = os.path.join(faces_dir, "train", "Deepfakes", "007_009.tfrecord")
    raws = [face_records.serialize_face(f) for f in faces]
    files.write_shard_atomically(face_path, raws)
    tasks = likelihood_extraction.plan_shards(faces_dir, out_dir)
    likelihood_extraction.extract_all(tasks, stand_in, batch_size=3)
    out = [r.numpy() for r in tf.data.TFRecordDataset(tasks[0].output_shard)]
    assert len(out) == len(raws)
    for face_raw, raw in zip(raws, out, strict=True):
        face_feature = tf.train.Example.FromString(face_raw).features.feature
        feature = tf.train.Example.FromString(raw).features.feature
        assert ("mask" in feature) == ("mask" in face_feature)
        if "mask" in feature:
            assert feature["mask"].bytes_list.value[0] == face_feature["mask"].bytes_list.value[0]
