"""Manipulation masks through the pipeline: generated in the FF++ layout, cropped with
the face box, kept byte for byte from face record to likelihood record, and counted
where a mask video is missing or shorter than its video."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil

import cv2
import numpy as np
import pytest
import tensorflow as tf

from data_prep import face_records, likelihood_records
from data_prep.datasets import GeneratedDataset
from data_prep.datasets.ffpp import masks_dir, videos_dir
from data_prep.face_detection import crop_mask
from data_prep.face_settings import FaceSettings
from data_prep.face_stage import prepare_faces
from data_prep.face_workers import crop_masks
from data_prep.methods import ORIGINAL
from data_prep.methods import PAPER_METHODS as METHODS
from data_prep.synthetic import generate_synthetic_ffpp, write_video
from experiments.pipeline import likelihoods as likelihood_extraction

IDENTITIES, FRAMES = 6, 4


def _read(path: str) -> list[np.ndarray]:
    capture = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            capture.release()
            return frames
        frames.append(frame)


def _face(mask: np.ndarray | None = None) -> face_records.FaceExample:
    image = (np.arange(64 * 64 * 3) % 251).astype(np.uint8).reshape(64, 64, 3)
    return face_records.FaceExample(
        image=image,
        video="003_007",
        frame=5,
        method="Deepfakes",
        label=1,
        split="train",
        compression="raw",
        box=(10, 20, 74, 84),
        mask=mask,
    )


def _half_mask() -> np.ndarray:
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 10:50] = 255
    return mask


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("masked_ffpp"))
    generate_synthetic_ffpp(root, identities=IDENTITIES, frames=FRAMES, seed=2)
    return root


# --- the schema ------------------------------------------------------------------------------


def test_a_face_without_a_mask_serialises_as_before():
    # The bytes written by the schema before masks existed (same crop and metadata).
    raw = face_records.serialize_face(_face())
    assert hashlib.sha256(raw).hexdigest() == (
        "58b1829987910efb808427bb1659e727fcef7f0a93c5438e2c0ac7d83065d9e8"
    )
    assert "mask" not in tf.train.Example.FromString(raw).features.feature
    assert face_records.parse_face_numpy(raw).mask is None
    parsed = face_records.parse_face(tf.constant(raw))
    assert not bool(parsed["has_mask"]) and not np.any(parsed["mask"].numpy())
    assert parsed["mask"].shape == (64, 64) and parsed["mask"].dtype == tf.uint8


def test_the_mask_round_trips_eagerly_and_in_tf_data():
    mask = _half_mask()
    raw = face_records.serialize_face(_face(mask))
    back = face_records.parse_face_numpy(raw)
    assert back.mask.dtype == np.uint8 and np.array_equal(back.mask, mask)
    parsed = next(
        iter(tf.data.Dataset.from_tensor_slices([raw]).map(face_records.parse_face).batch(1))
    )
    assert bool(parsed["has_mask"][0]) and np.array_equal(parsed["mask"][0].numpy(), mask)
    with pytest.raises(ValueError, match="Face mask must be uint8"):
        face_records.serialize_face(_face(mask[:32]))


def test_the_likelihood_record_keeps_the_mask_byte_for_byte():
    loglik = -np.ones((64, 64), np.float32)
    for mask in (_half_mask(), None):
        face_raw = face_records.serialize_face(_face(mask))
        raw = likelihood_records.serialize_likelihood(
            face_records.parse_face_numpy(face_raw), loglik, -4096.0
        )
        face_feature = tf.train.Example.FromString(face_raw).features.feature
        feature = tf.train.Example.FromString(raw).features.feature
        assert ("mask" in feature) == (mask is not None)
        if mask is not None:
            assert feature["mask"] == face_feature["mask"]
        eager = likelihood_records.parse_likelihood_numpy(raw)
        parsed = likelihood_records.parse_likelihood(tf.constant(raw))
        assert bool(parsed["has_mask"]) == (mask is not None)
        if mask is None:
            assert eager.face.mask is None and not np.any(parsed["mask"].numpy())
        else:
            assert np.array_equal(eager.face.mask, mask)
            assert np.array_equal(parsed["mask"].numpy(), mask)


def test_crop_mask_thresholds_the_area_resized_box():
    frame = np.zeros((100, 120, 3), np.uint8)
    frame[:, :60] = 255  # the left half of the frame manipulated
    crop = crop_mask(frame, (40, 10, 80, 50), size=8)  # the box straddles it: 20 px each
    assert crop.shape == (8, 8) and crop.dtype == np.uint8
    assert set(np.unique(crop)) == {0, 255}
    assert np.all(crop[:, :4] == 255) and np.all(crop[:, 4:] == 0)
    assert np.array_equal(crop_mask(frame[..., 0], (40, 10, 80, 50), size=8), crop)


def test_a_short_or_missing_mask_video_leaves_frames_without_a_mask(tmp_path):
    frames = [np.zeros((96, 96, 3), np.uint8) for _ in range(3)]
    for i, frame in enumerate(frames):
        frame[: 30 * (i + 1)] = 255
    path = str(tmp_path / "mask.avi")
    write_video(path, frames, fps=25)
    boxes = [(0, 0, 96, 96)] * 4
    masks, error = crop_masks(path, [0, 2, 3, 5], boxes, (96, 96), 16)
    assert [m is not None for m in masks] == [True, True, False, False]
    assert "ends after 3 frames" in error and "2 crops" in error
    assert np.array_equal(masks[1], crop_mask(frames[2], boxes[0], 16))
    masks, error = crop_masks(path, [0, 1], boxes[:2], (96, 96), 16)
    assert all(m is not None for m in masks) and error is None
    masks, error = crop_masks(path, [0, 1], boxes[:2], (80, 96), 16)
    assert masks == [None, None] and "not used" in error
    masks, error = crop_masks(str(tmp_path / "none.avi"), [0], boxes[:1], (96, 96), 16)
    assert masks == [None] and "does not exist" in error


# --- the generated masks -----------------------------------------------------------------------


@pytest.mark.slow
def test_generated_masks_cover_every_changed_pixel(dataset):
    listing = GeneratedDataset(dataset).list_videos("raw", None)
    assert {v.source for v in listing.videos} == {ORIGINAL, *METHODS}
    for entry in listing.videos:
        if entry.source == ORIGINAL:
            assert entry.mask_path is None
            continue
        assert entry.mask_path == os.path.join(
            masks_dir(dataset, entry.source), f"{entry.video}.avi"
        )
        target = entry.video.split("_")[0]
        original = _read(os.path.join(videos_dir(dataset, ORIGINAL, "raw"), f"{target}.avi"))
        fake, mask = _read(entry.path), _read(entry.mask_path)
        assert len(fake) == len(mask) == len(original) == FRAMES
        for t in range(FRAMES):
            assert set(np.unique(mask[t])) == {0, 255}, entry.key
            assert np.array_equal(mask[t][..., 0], mask[t][..., 1])
            region = mask[t][..., 0] > 0
            changed = np.any(fake[t] != original[t], axis=-1)
            # Lossless FFV1: outside the manipulation's region the fake is the target.
            assert not np.any(changed & ~region), entry.key
            # The region is the manipulation's own, not a loose box: most of it changed.
            assert changed.sum() > 0.4 * region.sum() > 0, (entry.key, t)
            assert region.mean() < 0.5, entry.key


# --- through the pipeline ----------------------------------------------------------------------


@pytest.mark.slow
def test_masks_go_through_faces_and_likelihoods(dataset, tmp_path):
    root = str(tmp_path / "ffpp")
    shutil.copytree(dataset, root)
    listing = GeneratedDataset(root).list_videos("raw", None)
    fakes = sorted((v for v in listing.assigned() if v.source != ORIGINAL), key=lambda v: v.key)
    short, gone = fakes[0], fakes[1]
    write_video(short.mask_path, _read(short.mask_path)[:2], fps=25)  # 2 of 4 frames
    os.remove(gone.mask_path)
    faces_dir = str(tmp_path / "faces")
    manifest = prepare_faces(GeneratedDataset(root), faces_dir, FaceSettings(), workers=1)
    assert manifest["complete"] and manifest["failed_videos"] == 0
    entries = {f"{e['method']}/{e['video']}": e for e in manifest["videos"]}
    for key, e in entries.items():
        if e["method"] == ORIGINAL:
            assert "frames_with_mask" not in e and "mask_path" not in e
            continue
        if key == short.key:
            assert e["frames_with_mask"] == 2 and e["frames_without_mask"] == e["faces"] - 2
            assert "ends after 2 frames" in e["mask_error"]
        elif key == gone.key:
            assert e["mask_path"] is None and e["mask_error"] is None
            assert e["frames_with_mask"] == 0 and e["frames_without_mask"] == e["faces"]
        else:
            assert e["frames_with_mask"] == e["faces"] > 0 and e["frames_without_mask"] == 0
            assert e["mask_error"] is None
    totals = manifest["totals"]
    assert totals["all"]["frames_with_mask"] + totals["all"]["frames_without_mask"] == sum(
        e["faces"] for e in entries.values() if e["method"] != ORIGINAL
    )
    assert totals["all"]["frames_without_mask"] == (
        entries[short.key]["faces"] - 2 + entries[gone.key]["faces"]
    )
    assert totals["by_method"][ORIGINAL]["frames_with_mask"] == 0

    by_key = {v.key: v for v in listing.videos}
    face_masks = {}
    for shard in sorted(glob.glob(os.path.join(faces_dir, "*", "*", "*.tfrecord"))):
        for raw in tf.data.TFRecordDataset(shard).as_numpy_iterator():
            face = face_records.parse_face_numpy(raw)
            key = f"{face.method}/{face.video}"
            if face.method == ORIGINAL or key == gone.key or (key == short.key and face.frame >= 2):
                assert face.mask is None, (key, face.frame)
                continue
            # The mask crop is the mask frame cut with the face's own box.
            frame = _read(by_key[key].mask_path)[face.frame]
            assert np.array_equal(face.mask, crop_mask(frame, face.box, 64)), (key, face.frame)
            assert np.any(face.mask) and face.mask.dtype == np.uint8
            face_masks[(key, face.frame)] = tf.train.Example.FromString(raw).features.feature[
                "mask"
            ]
    assert face_masks

    out_dir = str(tmp_path / "likelihoods")
    tasks = likelihood_extraction.plan_shards(faces_dir, out_dir)

    def stand_in(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        maps = -images.astype(np.float32).mean(axis=-1) / 32.0
        return maps, maps.sum(axis=(1, 2))

    likelihood_extraction.extract_all(tasks, stand_in, batch_size=16)
    carried = 0
    for task in tasks:
        for raw in tf.data.TFRecordDataset(task.output_shard).as_numpy_iterator():
            example = likelihood_records.parse_likelihood_numpy(raw)
            key = (f"{example.face.method}/{example.face.video}", example.face.frame)
            feature = tf.train.Example.FromString(raw).features.feature
            if key in face_masks:
                assert feature["mask"] == face_masks[key]  # byte for byte
                carried += 1
            else:
                assert "mask" not in feature and example.face.mask is None
    assert carried == len(face_masks)
