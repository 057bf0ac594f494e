"""The image log-likelihood baseline: scores, val-chosen thresholds, complexity."""

from __future__ import annotations

import glob
import math

import cv2
import numpy as np
import pytest
import tensorflow as tf
from likelihood_helpers import write_likelihood_tree

from classifier import metrics
from data_prep import likelihood_records
from data_prep.methods import ORIGINAL, PAPER_METHODS
from experiments.pipeline import loglik_baseline


def test_fakes_of_lower_likelihood_are_detected_in_both_protocols(tmp_path):
    root = write_likelihood_tree(str(tmp_path / "likelihoods"), split_videos={"val": 2, "test": 2})
    results = loglik_baseline.baseline_results(root)
    assert set(results) == {"known", "loo"}
    for protocol in ("known", "loo"):
        assert list(results[protocol]) == list(PAPER_METHODS)
        for entry in results[protocol].values():
            assert entry["loglik"]["frame_auc"] > 0.5
            assert 0.5 < entry["loglik"]["frame_accuracy"] <= 1.0
            assert 0.0 <= entry["complexity"]["frame_auc"] <= 1.0


def test_threshold_is_chosen_on_val_not_test():
    # Val separates at 1.5, test at 11.5: the val threshold calls every test frame fake.
    val_labels = np.array([0, 0, 0, 1, 1, 1])
    val_scores = np.array([0.0, 0.5, 1.0, 2.0, 2.5, 3.0])
    test_labels = val_labels.copy()
    test_scores = val_scores + 10.0
    result = loglik_baseline.evaluate_score(val_labels, val_scores, test_labels, test_scores)
    assert result["threshold"] == pytest.approx(1.5)
    assert result["val_balanced_accuracy"] == 1.0
    assert result["frame_accuracy"] == pytest.approx(0.5)  # not 1.0: test never tunes it
    assert result["frame_auc"] == 1.0


def test_threshold_maximises_balanced_accuracy_not_plain_accuracy():
    # 1 real among 9 fakes: plain accuracy would favour calling everything fake.
    labels = np.array([0] + [1] * 9)
    scores = np.array([5.0, 1, 2, 3, 4, 6, 7, 8, 9, 10])
    t = metrics.balanced_threshold(labels, scores)
    assert t == pytest.approx(5.5)  # real (5.0) below, 5 of 9 fakes above: balanced 0.78
    with pytest.raises(ValueError, match="real and fake"):
        metrics.balanced_threshold(np.ones(3), np.arange(3.0))


def test_leave_one_out_val_never_holds_the_method_under_test():
    val, test = loglik_baseline.protocol_sources("loo", "FaceSwap", PAPER_METHODS)
    assert "FaceSwap" not in val and set(val) == {ORIGINAL, *PAPER_METHODS} - {"FaceSwap"}
    assert test == (ORIGINAL, "FaceSwap")
    assert loglik_baseline.protocol_sources("known", "FaceSwap", PAPER_METHODS) == (
        (ORIGINAL, "FaceSwap"),
        (ORIGINAL, "FaceSwap"),
    )


def test_complexity_correction_on_a_known_image_is_serras_formula():
    crop = np.zeros((64, 64, 3), np.uint8)
    crop[:, :32, 0] = 255  # red left half: compresses to a few hundred bytes
    ok, encoded = cv2.imencode(".png", crop[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok
    bits = loglik_baseline.png_complexity_bits(crop)
    assert bits == 8 * len(encoded)
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert loglik_baseline.png_complexity_bits(noisy) > bits  # noise is complex
    loglik_nats = -5000.0
    expected = 5000.0 / math.log(2.0) - bits  # S = (-log2 p(x)) - L(x), in bits
    score = loglik_baseline.complexity_score(np.array([loglik_nats]), np.array([bits]))
    assert score[0] == pytest.approx(expected)
    assert loglik_baseline.loglik_score(np.array([loglik_nats]))[0] == 5000.0


def test_read_folder_keeps_per_frame_scalars_matching_the_records(tmp_path):
    root = write_likelihood_tree(
        str(tmp_path / "l"), sources=(ORIGINAL, "Deepfakes"), split_videos={"val": 2}, frames=2
    )
    frames = loglik_baseline.read_folder(root, "val", "Deepfakes")
    shards = sorted(glob.glob(f"{root}/val/Deepfakes/*.tfrecord"))
    examples = [
        likelihood_records.parse_likelihood_numpy(r.numpy())
        for r in tf.data.TFRecordDataset(shards)
    ]
    assert len(frames) == len(examples) == 4
    np.testing.assert_array_equal(frames.labels, 1)
    np.testing.assert_allclose(frames.image_loglik, [e.image_loglik for e in examples])
    expected_bits = [loglik_baseline.png_complexity_bits(e.face.image) for e in examples]
    np.testing.assert_array_equal(frames.complexity_bits, expected_bits)
    assert len(loglik_baseline.read_folder(root, "test", "Deepfakes")) == 0
