"""The Detector of an exported model folder: after the work directory is deleted it
gives the probabilities of the work directory's own models (load_ubm and the
detector's model.keras) on the same crops; videos are cropped as in training; bad
input gets its own error; the verdict is the mean with a seeded bootstrap interval.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import cv2
import keras
import numpy as np
import pytest
from conftest import copy_workdir

from classifier import training
from classifier.config import ALL
from data_prep.face_detection import crop_video
from data_prep.frames import VideoReadError
from data_prep.synthetic.assembly import write_video
from data_prep.synthetic.rendering import make_identity, render_video
from experiments.pipeline import detection, model_folder
from experiments.pipeline.detector import (
    Detector,
    ImageReadError,
    NoFaceError,
    Verdict,
    input_kind,
)
from pixelcnn_pp import likelihood


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def loaded(tiny_workdir, tmp_path_factory, crops):
    """(Detector loaded after the workdir is gone, reference maps, reference scores)."""
    root = str(tmp_path_factory.mktemp("work"))
    workdir = copy_workdir(tiny_workdir, root)
    ubm = likelihood.load_ubm(workdir.ubm)
    maps, _ = likelihood.likelihood_maps(ubm, crops)
    lenet = keras.models.load_model(os.path.join(workdir.protocol(ALL), ALL, detection.MODEL_FILE))
    scores = training.predict_batch(lenet, maps)
    out = str(tmp_path_factory.mktemp("exports") / "model")
    model_folder.export_model(workdir, out)
    shutil.rmtree(root)  # loading needs neither the workdir nor the checkpoints
    # ...nor the session's work directory this one was copied from: out of the way too.
    hidden = tiny_workdir + ".away"
    os.rename(tiny_workdir, hidden)
    try:
        detector = Detector.load(out)
    finally:
        os.rename(hidden, tiny_workdir)
    return detector, maps, scores


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> str:
    """A generated talking-head video (6 frames) with a face dlib finds."""
    width, height = 192, 160
    rendered = render_video(make_identity(0, 0, width, height), 6, width, height, seed=0)
    path = str(tmp_path_factory.mktemp("videos") / "face.avi")
    write_video(path, rendered.frames, 25.0)
    return path


@pytest.mark.slow
def test_exported_model_scores_as_the_workdir_models(loaded, crops):
    detector, maps, scores = loaded
    faces = detector.score_images(crops)
    np.testing.assert_allclose(faces.maps, maps, atol=1e-5)
    np.testing.assert_allclose(faces.scores, scores, atol=1e-5)
    assert faces.scores.dtype == np.float32 and faces.scores.shape == (5,)
    np.testing.assert_array_equal(faces.frames, np.arange(5))
    assert faces.boxes.shape == (5, 4) and not faces.boxes.any()
    assert detector.threshold == 0.5 and detector.face_settings.face_finder == "exact"
    assert detector.manifest["trained_on"]["protocol"] == ALL


@pytest.mark.slow
def test_video_is_cropped_as_in_training(loaded, video):
    detector, _, _ = loaded
    faces = detector.score_video(video, frames_per_video=4)
    settings = dataclasses.replace(detector.face_settings, frames_per_video=4)
    reference = crop_video(video, settings)
    np.testing.assert_array_equal(faces.frames, reference.frames)
    np.testing.assert_array_equal(faces.boxes, np.asarray(reference.boxes))
    np.testing.assert_array_equal(faces.crops, reference.images)
    np.testing.assert_allclose(faces.scores, detector.score_images(reference.images).scores)
    assert faces.maps.shape == (len(faces.frames), 64, 64)


@pytest.mark.slow
def test_image_file_is_one_frame_cropped_as_in_training(loaded, video, tmp_path):
    detector, _, _ = loaded
    capture = cv2.VideoCapture(video)
    ok, frame = capture.read()
    capture.release()
    assert ok
    path = str(tmp_path / "still.png")
    cv2.imwrite(path, frame)
    faces = detector.score_image_file(path)
    first = detector.score_video(video, frames_per_video=0)
    np.testing.assert_array_equal(faces.frames, [0])
    np.testing.assert_array_equal(faces.boxes[0], first.boxes[0])
    np.testing.assert_array_equal(faces.crops[0], first.crops[0])


@pytest.mark.slow
def test_bad_inputs_get_their_own_errors(loaded, tmp_path):
    detector, _, _ = loaded
    blank = np.full((120, 160, 3), 127, np.uint8)
    write_video(str(tmp_path / "blank.avi"), [blank] * 3, 25.0)
    with pytest.raises(NoFaceError, match="No face found"):
        detector.score_video(str(tmp_path / "blank.avi"))
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(VideoReadError):
        detector.score_video(str(tmp_path / "junk.mp4"))
    cv2.imwrite(str(tmp_path / "blank.png"), blank)
    with pytest.raises(NoFaceError):
        detector.score_image_file(str(tmp_path / "blank.png"))
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="Cannot read"):
        detector.score_image_file(str(tmp_path / "junk.jpg"))
    with pytest.raises(ValueError, match="uint8 crops"):
        detector.score_images(np.zeros((2, 32, 32, 3), np.uint8))


@pytest.mark.slow
def test_verdict_is_the_mean_with_a_seeded_bootstrap_interval(loaded):
    detector, _, _ = loaded
    scores = np.array([0.1, 0.9, 0.8, 0.7, 0.6], np.float32)
    verdict = detector.verdict(scores)
    assert isinstance(verdict, Verdict)
    assert verdict.score == pytest.approx(0.62)
    assert verdict.low <= verdict.score <= verdict.high and verdict.fake
    assert detector.verdict(scores, seed=0) == verdict
    assert detector.verdict(scores, seed=1) != verdict
    assert not detector.verdict(np.array([0.2, 0.49])).fake
    assert detector.verdict(np.array([0.5])).fake  # score >= threshold
    with pytest.raises(ValueError, match="No frame scores"):
        detector.verdict(np.zeros(0))


def test_input_kind():
    assert input_kind("a/b/clip.MP4") == "video"
    assert input_kind("x.avi") == "video"
    assert input_kind("face.JPG") == "image"
    assert input_kind("face.png") == "image"
    assert input_kind("notes.txt") is None
    assert input_kind("noextension") is None
