"""Localisation on still images with masks (experiments.pipeline.image_localisation):
images paired with their masks, the mask cut with the face's box, per-image metrics
and files, on the real FF++ example frames with untrained tiny models."""

from __future__ import annotations

import dataclasses
import os
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
from ubm_helpers import TINY_UBM, write_tiny_ubm

from data_prep.face_detection import FaceDetector, crop_mask
from data_prep.face_settings import FaceSettings
from experiments.pipeline import image_localisation


def test_images_are_paired_with_their_masks(tmp_path):
    for name in ("a.png", "a_mask.png", "b.jpg", "c_mask.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    pairs = image_localisation.find_images(str(tmp_path))
    assert [(os.path.basename(i), m and os.path.basename(m)) for i, m in pairs] == [
        ("a.png", "a_mask.png"),
        ("b.jpg", None),
    ]
    with pytest.raises(image_localisation.NoImagesError, match="is not a folder"):
        image_localisation.find_images(str(tmp_path / "missing"))
    only_masks = tmp_path / "masks"
    only_masks.mkdir()
    (only_masks / "x_mask.png").write_bytes(b"")
    with pytest.raises(image_localisation.NoImagesError, match="other than masks"):
        image_localisation.find_images(str(only_masks))


@pytest.mark.slow  # dlib on three 640x480 frames, two tiny models: ~15 s
def test_ffpp_examples_are_scored_against_their_mask(shared_data, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(shared_data / "ffpp_examples", images)
    cv2.imwrite(str(images / "blank.png"), np.zeros((120, 160, 3), np.uint8))  # no face
    ubm_dir, background_dir = str(tmp_path / "ubm"), str(tmp_path / "background_ubm")
    write_tiny_ubm(ubm_dir)
    write_tiny_ubm(background_dir, 1, dataclasses.replace(TINY_UBM, perturbation_rate=0.2))
    settings = FaceSettings(face_finder="exact")
    out = str(tmp_path / "out")
    rows = image_localisation.localise_images(
        str(images), ubm_dir, out, settings, background_dir=background_dir, header="test"
    )
    by = {r["image"]: r for r in rows}
    assert by["blank.png"]["error"].startswith("No face found")
    fake = by["ex_deepfakes.png"]
    assert fake["mask"] == "yes" and 0.05 < fake["mask_fraction"] < 0.95
    for column in ("neg_loglik_pixel_auc", "likelihood_ratio_pixel_auc"):
        assert 0.0 <= fake[column] <= 1.0
    assert np.isnan(by["ex_original.png"]["neg_loglik_pixel_auc"])
    assert fake["image_loglik"] < 0 and fake["background_image_loglik"] < 0
    # The mask is cut with the face's own box, as the face stage cuts video masks.
    box = tuple(int(v) for v in fake["box"].split())
    mask = cv2.imread(str(images / "ex_deepfakes_mask.png"), cv2.IMREAD_GRAYSCALE)
    _, _, crop = image_localisation.crop_image(
        str(images / "ex_deepfakes.png"),
        str(images / "ex_deepfakes_mask.png"),
        settings,
        FaceDetector(settings.fast),
    )
    assert np.array_equal(crop, crop_mask(mask, box, settings.crop_size))
    table = pd.read_csv(os.path.join(out, image_localisation.CSV))
    assert list(table.columns) == list(image_localisation.COLUMNS) and len(table) == 3
    assert os.path.getsize(os.path.join(out, image_localisation.FIGURE)) > 1000


def test_a_mask_of_another_size_is_refused(shared_data, tmp_path):
    frame = shared_data / "ffpp_examples" / "ex_deepfakes.png"
    cv2.imwrite(str(tmp_path / "small_mask.png"), np.zeros((10, 10), np.uint8))
    settings = FaceSettings()
    with pytest.raises(ValueError, match="must be the size of its image"):
        image_localisation.crop_image(
            str(frame), str(tmp_path / "small_mask.png"), settings, FaceDetector(settings.fast)
        )
