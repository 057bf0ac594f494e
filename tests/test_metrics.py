"""Detection metrics on known cases, and the video bootstrap's intervals."""

from __future__ import annotations

import numpy as np
import pytest

from classifier import metrics


def _videos(rng: np.random.Generator, n_videos: int, frames: int, separation: float):
    labels = np.repeat(np.arange(n_videos) % 2, frames)
    keys = np.repeat([f"v{i}" for i in range(n_videos)], frames)
    video_effect = np.repeat(rng.normal(0, 0.15, n_videos), frames)
    scores = np.clip(0.5 + separation * (labels - 0.5) + video_effect, 0, 1)
    scores = np.clip(scores + rng.normal(0, 0.1, scores.shape), 0, 1)
    return labels, scores, keys


def test_perfect_scores(rng):
    labels, _, keys = _videos(rng, 10, 4, 0.0)
    result = metrics.compute_metrics(labels, labels * 0.8 + 0.1, keys)
    assert result == {
        "frame_accuracy": 1.0,
        "frame_auc": 1.0,
        "frame_eer": 0.0,
        "video_accuracy": 1.0,
        "video_auc": 1.0,
    }


def test_inverted_scores(rng):
    labels, _, keys = _videos(rng, 10, 4, 0.0)
    result = metrics.compute_metrics(labels, 0.9 - labels * 0.8, keys)
    assert result["frame_accuracy"] == 0.0
    assert result["frame_auc"] == 0.0
    assert result["frame_eer"] == 1.0
    assert result["video_accuracy"] == 0.0
    assert result["video_auc"] == 0.0


def test_random_scores_are_near_chance(rng):
    labels = rng.integers(0, 2, 20000)
    keys = np.arange(20000).astype(str)
    result = metrics.compute_metrics(labels, rng.random(20000), keys)
    for name in metrics.METRICS:
        assert result[name] == pytest.approx(0.5, abs=0.02), name


def test_eer_matches_a_hand_computed_case():
    # Real scores 0.1, 0.2, 0.6; fake 0.4, 0.7, 0.9: one error each way at any
    # threshold in (0.4, 0.6], so FPR = FNR = 1/3.
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.4, 0.7, 0.9])
    assert metrics.eer(labels, scores) == pytest.approx(1 / 3)
    assert metrics.auc(labels, scores) == pytest.approx(8 / 9)


def test_video_scores_average_frames():
    keys = np.array(["a", "a", "b", "b", "b"])
    labels = np.array([1, 1, 0, 0, 0])
    scores = np.array([0.2, 0.6, 0.1, 0.4, 0.7])
    v_keys, v_labels, v_scores = metrics.video_scores(keys, labels, scores)
    assert list(v_keys) == ["a", "b"]
    assert list(v_labels) == [1, 0]
    np.testing.assert_allclose(v_scores, [0.4, 0.4])
    # Frame-level 0.5: 3 of 5 right; video-level: a (0.4 < 0.5) wrong, b right.
    result = metrics.compute_metrics(labels, scores, keys)
    assert result["frame_accuracy"] == pytest.approx(3 / 5)
    assert result["video_accuracy"] == pytest.approx(1 / 2)


def test_video_with_mixed_labels_is_refused():
    with pytest.raises(ValueError, match="both real and fake"):
        metrics.video_scores(np.array(["a", "a"]), np.array([0, 1]), np.array([0.1, 0.9]))


def test_bootstrap_interval_contains_estimate_and_shrinks(rng):
    widths = {}
    for n_videos in (20, 320):
        labels, scores, keys = _videos(rng, n_videos, 5, 0.3)
        report, samples = metrics.evaluate(labels, scores, keys, num_samples=200, seed=3)
        for name in metrics.METRICS:
            entry = report[name]
            assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], (n_videos, name)
            assert samples[name].shape == (200,)
        assert report["counts"]["videos"] == n_videos
        assert report["counts"]["real_videos"] == report["counts"]["fake_videos"] == n_videos // 2
        widths[n_videos] = {
            m: report[m]["ci_high"] - report[m]["ci_low"] for m in ("frame_accuracy", "frame_auc")
        }
    for name in widths[20]:
        assert widths[320][name] < 0.6 * widths[20][name], name


def test_bootstrap_resamples_whole_videos():
    # Two videos per class, all frames of a video share one score: every resample's
    # frame accuracy is then a multiple of 1/4 (whole videos move together).
    keys = np.repeat(["r1", "r2", "f1", "f2"], 10)
    labels = np.repeat([0, 0, 1, 1], 10)
    scores = np.repeat([0.1, 0.7, 0.9, 0.3], 10)
    samples = metrics.bootstrap_metrics(labels, scores, keys, num_samples=100, seed=0)
    acc = samples["frame_accuracy"]
    np.testing.assert_allclose(acc * 4, np.round(acc * 4), atol=1e-9)
    assert len(np.unique(acc)) > 1


def test_empty_and_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="empty"):
        metrics.evaluate(np.array([]), np.array([]), np.array([]))
    with pytest.raises(ValueError, match="differ in length"):
        metrics.evaluate(np.array([0, 1]), np.array([0.3]), np.array(["a", "b"]))
