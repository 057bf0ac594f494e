"""Binned pixel metrics of the localisation (`localisation`), in bounded memory.

Pooled AUC and AP come from per-score-bin counts of positive (manipulated) and negative
pixels: 4096 bins over a fixed range per score (`SCORE_RANGES`; a value outside counts
in the edge bin), kept per video for the bootstrap. Within a bin the order of positives
and negatives is unknown and counts as a tie, so the pooled AUC differs from the exact
one by at most the share of positive-negative pairs that share a bin (bins 0.02 nats
wide). Per-frame AUC and AP are exact (sklearn on the frame's pixels). The IoU of every
bin-edge threshold comes from the same counts. The bootstrap resamples videos (Efron &
Tibshirani, 1993) by weighting their counts; the control's permutation gives each frame
the mask of a frame of another video.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn import metrics as sk_metrics

# Fixed score ranges (nats) of the 4096 histogram bins: per pixel the RGB joint
# log-likelihood is <= 0 and rarely below -80 nats.
SCORE_RANGES: dict[str, tuple[float, float]] = {
    "neg_loglik": (0.0, 80.0),
    "pristine_diff": (-40.0, 40.0),
    "likelihood_ratio": (-40.0, 40.0),
}
BINS = 4096
QUANTILES = np.round(np.arange(0.01, 1.0, 0.01), 2)  # IoU threshold candidates (val)


def bin_index(scores: np.ndarray, score: str) -> np.ndarray:
    """Bin of each score (int64, same shape) in [0, BINS) over SCORE_RANGES[score]."""
    low, high = SCORE_RANGES[score]
    index = np.floor((np.asarray(scores, np.float64) - low) * (BINS / (high - low)))
    return np.clip(index, 0, BINS - 1).astype(np.int64)


def bin_edge(score: str, k: int) -> float:
    """The lower edge of bin k: the threshold `index >= k` stands for."""
    low, high = SCORE_RANGES[score]
    return float(low + k * (high - low) / BINS)


def histogram_auc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """ROC AUC from per-bin counts [..., BINS] (higher bin = more anomalous): the
    probability that a positive pixel outscores a negative one, ties (same bin) half.
    Equals sklearn's roc_auc_score on the binned scores. NaN without both classes."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    below = np.cumsum(neg, axis=-1) - neg
    n_pos, n_neg = pos.sum(axis=-1), neg.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=-1) / (n_pos * n_neg)


def histogram_ap(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Average precision from per-bin counts [..., BINS] (sklearn's definition on the
    binned scores: sum over thresholds of recall increment x precision)."""
    pos = np.asarray(pos, np.float64)[..., ::-1]
    neg = np.asarray(neg, np.float64)[..., ::-1]
    tp, fp = np.cumsum(pos, axis=-1), np.cumsum(neg, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        return (pos * precision).sum(axis=-1) / pos.sum(axis=-1)


def frame_histograms(index: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame bin counts of positive and negative pixels.

    Args:
      index: int64 [B, N] bins; positive: bool [B, N].
    Returns:
      (pos, neg) int64 [B, BINS] each.
    """
    b = index.shape[0]
    flat = index + BINS * np.arange(b)[:, None]
    pos = np.bincount(flat[positive], minlength=b * BINS).reshape(b, BINS)
    neg = np.bincount(flat[~positive], minlength=b * BINS).reshape(b, BINS)
    return pos, neg


def iou_curve(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """IoU of `bin >= k` with the mask for every k in 0..BINS, per frame.

    Args:
      pos, neg: per-frame counts [B, BINS].
    Returns:
      float64 [B, BINS + 1]; 1 where prediction and mask are both empty.
    """
    zeros = np.zeros((pos.shape[0], 1))
    tp = np.concatenate([np.cumsum(pos[:, ::-1], axis=1)[:, ::-1], zeros], axis=1)
    fp = np.concatenate([np.cumsum(neg[:, ::-1], axis=1)[:, ::-1], zeros], axis=1)
    union = pos.sum(axis=1, keepdims=True) + fp
    return np.where(union > 0, tp / np.maximum(union, 1), 1.0)


def quantile_candidates(total: np.ndarray, quantiles: np.ndarray = QUANTILES) -> np.ndarray:
    """Threshold indices k (predict `bin >= k`) at the quantiles of the pooled counts
    `total` [BINS]: the fraction of scores below edge k first reaches each quantile."""
    cdf = np.cumsum(total) / max(total.sum(), 1)
    return np.unique(np.searchsorted(cdf, quantiles, side="left") + 1).clip(0, BINS)


def frame_auc_ap(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-frame pixel AUC and AP (sklearn); NaN where a mask is all 0 or all 1.

    scores float [B, N], positive bool [B, N] -> (auc [B], ap [B]).
    """
    auc = np.full(len(scores), np.nan)
    ap = np.full(len(scores), np.nan)
    for i, (s, y) in enumerate(zip(scores, positive, strict=True)):
        if 0 < y.sum() < y.size:
            auc[i] = sk_metrics.roc_auc_score(y, s)
            ap[i] = sk_metrics.average_precision_score(y, s)
    return auc, ap


def derangement(videos: Sequence[str], seed: int) -> tuple[np.ndarray, int]:
    """A seeded permutation `source` of the frames (frame i gets the mask of frame
    source[i]) that gives each frame a mask of another video where possible: the videos
    in a seeded order, the frames cycled by the longest video's length (by half the
    frames when one video holds more than half). Returns (source int64 [N], frames left
    with a mask of their own video)."""
    videos = np.asarray(videos)
    n = len(videos)
    if n == 0:
        return np.zeros(0, np.int64), 0
    names, inverse, counts = np.unique(videos, return_inverse=True, return_counts=True)
    rank = np.random.default_rng(seed).permutation(len(names))[inverse]
    order = np.lexsort((np.arange(n), rank))
    shift = int(counts.max()) if n >= 2 * counts.max() else max(n // 2, 1)
    source = np.empty(n, np.int64)
    source[order] = order[(np.arange(n) + shift) % n]
    return source, int(np.sum(videos[source] == videos))


def bootstrap_replicates(
    video_pos: np.ndarray,
    video_neg: np.ndarray,
    frame_sums: np.ndarray,
    weights: np.ndarray,
) -> dict[str, np.ndarray]:
    """Bootstrap replicates of the pooled AUC/AP and the per-frame means.

    video_pos/neg [V, BINS]; frame_sums [V, 3] (sum AUC, sum AP, frames with an AUC);
    weights [R, V] (times each video is drawn) -> {name: [R]}.
    """
    out = {"pixel_auc": [], "pixel_ap": [], "frame_auc": [], "frame_ap": []}
    for chunk in np.array_split(weights, max(1, -(-len(weights) // 100))):  # [<=100, 2, BINS]
        pos = chunk @ video_pos.astype(np.float64)
        neg = chunk @ video_neg.astype(np.float64)
        sums = chunk @ frame_sums
        with np.errstate(invalid="ignore", divide="ignore"):
            out["pixel_auc"].append(histogram_auc(pos, neg))
            out["pixel_ap"].append(histogram_ap(pos, neg))
            out["frame_auc"].append(sums[:, 0] / sums[:, 2])
            out["frame_ap"].append(sums[:, 1] / sums[:, 2])
    return {k: np.concatenate(v) for k, v in out.items()}


def interval(samples: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of the finite replicates (NaN, NaN without any)."""
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return math.nan, math.nan
    low, high = np.quantile(samples, [0.025, 0.975])
    return float(low), float(high)
