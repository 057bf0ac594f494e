"""Detection metrics with bootstrap confidence intervals over videos.

The paper (Khodabakhsh & Busch, BIOSIG 2020, Tables 1 and 2) reports frame-level
accuracy at a 0.5 threshold; FF++ (Roessler et al., 2019) does the same. We add the
frame-level ROC AUC and equal error rate, and video-level accuracy and AUC where a
video's score is the mean of its frame scores. ROC and AUC come from scikit-learn.

Frames of one video are strongly correlated, so the 95% confidence intervals resample
whole videos (percentile bootstrap), stratified by class so that each resample keeps
the real/fake video counts of the evaluation set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sklearn
from sklearn.metrics import roc_auc_score, roc_curve

METRICS: tuple[str, ...] = (
    "frame_accuracy",
    "frame_auc",
    "frame_eer",
    "video_accuracy",
    "video_auc",
)
THRESHOLD = 0.5
# Frame accuracy at the threshold chosen on the val split (`balanced_threshold`): where
# the scores are not calibrated at 0.5 (another dataset, a shifted test set).
VAL_THRESHOLD_METRIC = "frame_accuracy_val_threshold"


def _names(val_threshold: float | None) -> tuple[str, ...]:
    return METRICS if val_threshold is None else (*METRICS, VAL_THRESHOLD_METRIC)


def balanced_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold t maximising class-balanced accuracy of (score >= t) == fake.

    Candidates are the midpoints between consecutive distinct scores (and one below
    the lowest, one above the highest), so ties in the data never sit on t; of equal
    maxima the lowest t is taken.

    Raises:
      ValueError: `labels` lack real or fake examples.
    """
    labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
    n_fake, n_real = int(np.sum(labels == 1)), int(np.sum(labels == 0))
    if n_fake == 0 or n_real == 0:
        raise ValueError(
            f"A threshold needs real and fake examples; got {n_real} real, {n_fake} fake."
        )
    values = np.unique(scores)
    candidates = np.concatenate(
        [[values[0] - 1.0], (values[:-1] + values[1:]) / 2.0, [values[-1] + 1.0]]
    )
    # Counts of examples >= each candidate, per class, from sorted scores.
    fake_above = n_fake - np.searchsorted(np.sort(scores[labels == 1]), candidates, "left")
    real_above = n_real - np.searchsorted(np.sort(scores[labels == 0]), candidates, "left")
    balanced = (fake_above / n_fake + (n_real - real_above) / n_real) / 2.0
    return float(candidates[int(np.argmax(balanced))])


def accuracy(labels: np.ndarray, scores: np.ndarray, threshold: float = THRESHOLD) -> float:
    """Fraction of examples with (score >= threshold) == label; labels 0/1, scores [N]."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    return float(np.mean((scores >= threshold).astype(labels.dtype) == labels))


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (scikit-learn); NaN where only one class is present."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, scores))


def eer(labels: np.ndarray, scores: np.ndarray) -> float:
    """Equal error rate: where the false-positive rate meets the false-negative rate.

    Read off scikit-learn's ROC curve, interpolating linearly between the two ROC
    points where FNR - FPR changes sign. NaN where only one class is present.
    """
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1.0 - tpr
    diff = fnr - fpr  # non-increasing along the curve, from 1 to -1
    i = int(np.nonzero(diff <= 0)[0][0])
    if i == 0 or diff[i] == 0:
        return float((fpr[i] + fnr[i]) / 2)
    t = diff[i - 1] / (diff[i - 1] - diff[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def video_scores(
    video_keys: np.ndarray, labels: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-video mean frame score.

    Args:
      video_keys: str [N], unique per video (e.g. `<method>/<video>`).
      labels, scores: [N] per frame.

    Returns:
      (keys [V], labels [V], mean scores [V]).

    Raises:
      ValueError: a video holds frames of both labels.
    """
    keys, inverse = np.unique(np.asarray(video_keys), return_inverse=True)
    counts = np.bincount(inverse)
    mean_scores = np.bincount(inverse, weights=scores) / counts
    mean_labels = np.bincount(inverse, weights=labels) / counts
    if np.any((mean_labels != 0) & (mean_labels != 1)):
        raise ValueError("A video holds both real and fake frames: video keys are not unique.")
    return keys, mean_labels.astype(np.int64), mean_scores


def compute_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    video_keys: np.ndarray,
    val_threshold: float | None = None,
) -> dict[str, float]:
    """All METRICS for frame labels [N] (0/1), fake scores [N] in [0, 1], video keys [N];
    with `val_threshold`, also the frame accuracy at it (VAL_THRESHOLD_METRIC)."""
    labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
    _, v_labels, v_scores = video_scores(video_keys, labels, scores)
    values = {
        "frame_accuracy": accuracy(labels, scores),
        "frame_auc": auc(labels, scores),
        "frame_eer": eer(labels, scores),
        "video_accuracy": accuracy(v_labels, v_scores),
        "video_auc": auc(v_labels, v_scores),
    }
    if val_threshold is not None:
        values[VAL_THRESHOLD_METRIC] = accuracy(labels, scores, val_threshold)
    return values


def bootstrap_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    video_keys: np.ndarray,
    num_samples: int = 1000,
    seed: int = 0,
    val_threshold: float | None = None,
) -> dict[str, np.ndarray]:
    """Metrics on `num_samples` resamples of whole videos, stratified by class
    (`val_threshold` as in `compute_metrics`).

    Returns:
      {metric: float64 [num_samples]} (NaN where a resample leaves a metric undefined).
    """
    labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
    _, inverse = np.unique(np.asarray(video_keys), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    frames_of = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
    video_label = np.array([labels[f[0]] for f in frames_of])
    strata = [np.nonzero(video_label == c)[0] for c in np.unique(video_label)]
    rng = np.random.default_rng(seed)
    out = {m: np.empty(num_samples) for m in _names(val_threshold)}
    # Resamples of checked arrays: scikit-learn's checks of every call would cost about a
    # quarter of the loop.
    with sklearn.config_context(skip_parameter_validation=True, assume_finite=True):
        for b in range(num_samples):
            chosen = np.concatenate([rng.choice(s, size=len(s), replace=True) for s in strata])
            idx = np.concatenate([frames_of[v] for v in chosen])
            # Each drawn copy of a video is its own video in the resample.
            copy_keys = np.repeat(np.arange(len(chosen)), [len(frames_of[v]) for v in chosen])
            values = compute_metrics(labels[idx], scores[idx], copy_keys, val_threshold)
            for m in out:
                out[m][b] = values[m]
    return out


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The central `confidence` percentile interval of bootstrap samples (NaNs ignored)."""
    samples = np.asarray(samples, np.float64)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    return float(low), float(high)


def evaluate(
    labels: np.ndarray,
    scores: np.ndarray,
    video_keys: np.ndarray,
    num_samples: int = 1000,
    seed: int = 0,
    val_threshold: float | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Point estimates, 95% bootstrap intervals and counts of one evaluation set.

    Args:
      labels: int [N] 0 real / 1 fake per frame; scores: float [N] fake probability;
      video_keys: str [N] unique per video; num_samples: bootstrap resamples;
      val_threshold: a threshold chosen on the val split: adds VAL_THRESHOLD_METRIC.

    Returns:
      (report, samples): report = {metric: {"value", "ci_low", "ci_high"}, "counts":
      {"frames", "videos", "real_frames", "fake_frames", "real_videos", "fake_videos"},
      "bootstrap": {"samples", "confidence", "resampled": "videos, stratified by class"}};
      samples = the bootstrap values per metric ([num_samples] each).

    Raises:
      ValueError: empty input or mismatched lengths.
    """
    labels, scores, video_keys = np.asarray(labels), np.asarray(scores), np.asarray(video_keys)
    if not (len(labels) == len(scores) == len(video_keys)):
        raise ValueError(
            f"labels, scores and video keys differ in length: {len(labels)}, {len(scores)}, "
            f"{len(video_keys)}."
        )
    if len(labels) == 0:
        raise ValueError("Cannot evaluate an empty set: the split holds no examples.")
    point = compute_metrics(labels, scores, video_keys, val_threshold)
    samples = bootstrap_metrics(labels, scores, video_keys, num_samples, seed, val_threshold)
    report: dict[str, Any] = {}
    if val_threshold is not None:
        report["val_threshold"] = float(val_threshold)
    for m in _names(val_threshold):
        low, high = percentile_interval(samples[m])
        report[m] = {"value": point[m], "ci_low": low, "ci_high": high}
    _, v_labels, _ = video_scores(video_keys, labels, scores)
    report["counts"] = {
        "frames": int(len(labels)),
        "videos": int(len(v_labels)),
        "real_frames": int(np.sum(labels == 0)),
        "fake_frames": int(np.sum(labels == 1)),
        "real_videos": int(np.sum(v_labels == 0)),
        "fake_videos": int(np.sum(v_labels == 1)),
    }
    report["bootstrap"] = {
        "samples": int(num_samples),
        "confidence": 0.95,
        "resampled": "videos, stratified by class (percentile interval)",
    }
    return report, samples
