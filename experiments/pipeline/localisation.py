"""Localisation: do the UBM's per-pixel log-likelihood maps point at the manipulated pixels?

Khodabakhsh & Busch (BIOSIG 2020) classify whole frames from the per-pixel maps
`log p(x_i | x_<i)` of a PixelCNN++ trained on pristine faces; the maps are meant to be
low where a face was manipulated. This stage measures that against the manipulation
masks (FF++ `masks/` videos, cropped with the face box by the face stage; mask > 0 is
a manipulated pixel) on the test split, per method, for fake frames that have a mask
(frames without one are counted and left out; originals are not scored). Two
per-pixel anomaly scores (higher = more anomalous):

- `neg_loglik`: `-loglik_map`;
- `pristine_diff`: `mean_map - loglik_map`, `mean_map` the per-pixel mean of the maps
  of the TRAIN split's originals (a pixel less likely than it usually is there);
- `likelihood_ratio`: `background_map - loglik_map`, the per-pixel log-likelihood
  ratio of a background PixelCNN++ (trained on the pristine crops with values replaced
  at random; `train_ubm --background`, maps by `extract_likelihoods --background`) to
  the UBM, after Ren et al. (NeurIPS 2019): what both models find likely (smooth skin,
  flat background) cancels, what only the face model expects remains. Scored for a
  method only where every val and test shard of it has a background map.

Metrics (per method and score): pixel AUC and average precision POOLED over every
pixel of every frame, and their per-frame means (frames whose mask is all 0 or all 1
have no AUC: left out of the means and counted), each with a 95% bootstrap interval
over videos (videos resampled, seeded); the IoU of the score map thresholded at the
level that maximises the mean IoU on the VAL split's masked fake frames of the method
(candidates: the pooled val scores' 1%..99% quantiles), applied to test; and a control,
the pooled AUC with the masks permuted across frames (seeded, each frame given the mask
of a frame of another video where the method has enough videos): near 0.5 where a mask's
position says nothing about another frame's; above 0.5 it is what the masks' usual
place alone (FF++ masks cover the face centre) is worth, the floor to compare with.

Streaming, bounded memory: maps are read in batches. Pooled AUC and AP come from
per-score-bin counts of positive and negative pixels: 4096 bins over a fixed range per
score (`SCORE_RANGES`; a value outside counts in the edge bin, and the share of such
pixels is reported as `clipped_fraction`), kept per video for the bootstrap (2 x 4096
int64 per video and score: 18 MB for FF++'s 140 test videos per method, two scores).
Within a bin the order of positives and negatives is unknown and counts as a tie, so the
pooled AUC differs from the exact one by at most the share of positive-negative pairs
that share a bin (bins 0.02 nats wide). The per-frame values are exact (sklearn on the
frame's 4096 pixels). The IoU of every bin-edge threshold is accumulated per frame in one
val pass. The control re-reads the test maps and keeps only the frames' masks, packed to
bits (512 bytes a frame: 2.3 MB for FF++'s ~4,500 test frames per method).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf
from absl import logging
from matplotlib.figure import Figure
from sklearn import metrics as sk_metrics

from classifier import data as data_lib
from data_prep import face_records, likelihood_records
from data_prep.files import atomic_path, check_writable, read_json, write_text_atomically
from data_prep.methods import ORIGINAL, abbreviation
from experiments.pipeline import report, tables
from experiments.pipeline.workdir import CONFIG_FILE, SHARD_SUFFIX, Workdir

CSV = "localisation.csv"
MARKDOWN = "localisation.md"
LATEX = "localisation.tex"
FIGURE = "fig_localisation.png"

SCORES: tuple[str, ...] = ("neg_loglik", "pristine_diff", "likelihood_ratio")
SCORE_NOTES = {
    "neg_loglik": "neg_loglik: -log p(x_i | x_<i), the UBM's per-pixel map negated.",
    "pristine_diff": (
        "pristine_diff: mean pristine map (train-split originals, per pixel) - the map: "
        "how much less likely a pixel is than usual at that position."
    ),
    "likelihood_ratio": (
        "likelihood_ratio: log p_background(x_i | x_<i) - log p_UBM(x_i | x_<i), the "
        "background PixelCNN++ trained on pristine crops with {rate} of their values "
        "replaced at random (Ren et al., NeurIPS 2019)."
    ),
}
# Fixed score ranges (nats) of the 4096 histogram bins: per pixel the RGB joint
# log-likelihood is <= 0 and rarely below -80 nats.
SCORE_RANGES: dict[str, tuple[float, float]] = {
    "neg_loglik": (0.0, 80.0),
    "pristine_diff": (-40.0, 40.0),
    "likelihood_ratio": (-40.0, 40.0),
}
BINS = 4096
QUANTILES = np.round(np.arange(0.01, 1.0, 0.01), 2)  # IoU threshold candidates (val)
BATCH = 64  # maps per batch: [64, 4096] pixel scores and a [64, 4097] IoU curve
COLUMNS: tuple[str, ...] = (
    "method",
    "score",
    "videos",
    "frames",
    "frames_without_mask",
    "frames_degenerate",
    "mask_fraction",
    "pixel_auc",
    "pixel_auc_low",
    "pixel_auc_high",
    "pixel_ap",
    "pixel_ap_low",
    "pixel_ap_high",
    "frame_auc_mean",
    "frame_auc_low",
    "frame_auc_high",
    "frame_ap_mean",
    "frame_ap_low",
    "frame_ap_high",
    "iou",
    "iou_threshold",
    "val_iou",
    "val_frames",
    "control_pixel_auc",
    "clipped_fraction",
)


# --- histogram metrics --------------------------------------------------------------


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


# --- reading maps -------------------------------------------------------------------

_READ_SPEC = {
    **{
        k: likelihood_records.LIKELIHOOD_FEATURE_SPEC[k]
        for k in ("loglik_map", "map_size", "video", "frame")
    },
    **face_records.MASK_FEATURE_SPEC,
}


def _parser(map_size: int):
    def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_single_example(serialized, _READ_SPEC)
        loglik = likelihood_records.decode_map(parsed.pop("loglik_map"), parsed.pop("map_size"))
        parsed["loglik_map"] = tf.ensure_shape(loglik, [map_size, map_size])
        parsed["has_mask"], parsed["mask"] = face_records.decode_mask(parsed.pop("mask"), map_size)
        return parsed

    return parse


def read_batches(
    likelihoods_dir: str,
    split: str,
    source: str,
    map_size: int = 64,
    background_dir: str | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Batches of one folder in shard order (the same order on every read): `loglik_map`
    float32 [B, S, S], `has_mask` bool [B], `mask` uint8 [B, S, S], `video` str [B],
    `frame` int64 [B]; with `background_dir`, also `background_map` float32 [B, S, S],
    the background model's maps of the same crops (its shards must mirror these:
    `background_shards_complete`).

    Raises:
      ValueError: a background record is not of the same video and frame.
    """
    shards = data_lib.folder_shards(likelihoods_dir, split, source)
    if not shards:
        return
    parse = _parser(map_size)
    dataset = tf.data.TFRecordDataset(shards).map(parse)
    if background_dir is not None:
        mirrored = [
            os.path.join(background_dir, os.path.relpath(p, likelihoods_dir)) for p in shards
        ]
        background = tf.data.TFRecordDataset(mirrored).map(parse)
        dataset = tf.data.Dataset.zip(dataset, background).map(_with_background)
    for batch in dataset.batch(BATCH).prefetch(2):
        out = {k: v.numpy() for k, v in batch.items()}
        out["video"] = out["video"].astype(str)
        if background_dir is not None:
            mismatch = (out["video"] != out.pop("background_video").astype(str)) | (
                out["frame"] != out.pop("background_frame")
            )
            if mismatch.any():
                raise ValueError(
                    f"The background maps in {background_dir!r} ({split}/{source}) are not of "
                    f"the crops of {likelihoods_dir!r} (video {out['video'][mismatch][0]}): "
                    "delete that folder and re-run extract_likelihoods --background."
                )
        yield out


def _with_background(ubm: dict, background: dict) -> dict:
    out = dict(ubm)
    out["background_map"] = background["loglik_map"]
    out["background_video"] = background["video"]
    out["background_frame"] = background["frame"]
    return out


def background_shards_complete(likelihoods_dir: str, background_dir: str, method: str) -> bool:
    """Whether every val and test shard of `method` has a background map shard."""
    for split in ("val", "test"):
        for path in data_lib.folder_shards(likelihoods_dir, split, method):
            if not os.path.isfile(
                os.path.join(background_dir, os.path.relpath(path, likelihoods_dir))
            ):
                return False
    return True


def pristine_mean_map(likelihoods_dir: str, map_size: int = 64) -> np.ndarray | None:
    """Per-pixel mean float64 [S, S] of the train split's original maps (None: none)."""
    total, count = np.zeros((map_size, map_size)), 0
    for batch in read_batches(likelihoods_dir, "train", ORIGINAL, map_size):
        total += batch["loglik_map"].sum(axis=0, dtype=np.float64)
        count += len(batch["loglik_map"])
    return total / count if count else None


def score_maps(
    loglik: np.ndarray,
    score: str,
    mean_map: np.ndarray | None,
    background: np.ndarray | None = None,
) -> np.ndarray:
    """Anomaly scores [B, S, S] (higher = more anomalous) of maps [B, S, S]; `background`
    [B, S, S]: the background model's maps of the same crops (likelihood_ratio)."""
    if score == "neg_loglik":
        return -loglik.astype(np.float64)
    if score == "pristine_diff":
        return mean_map[None] - loglik
    if score == "likelihood_ratio":
        return background.astype(np.float64) - loglik
    raise ValueError(f"Unknown localisation score {score!r}: one of {', '.join(SCORES)}.")


# --- one method ---------------------------------------------------------------------


@dataclasses.dataclass
class _Example:
    """The figure's frame: video, frame, loglik [S, S], mask [S, S], background map
    [S, S] (None without one)."""

    video: str
    frame: int
    loglik: np.ndarray
    mask: np.ndarray
    background: np.ndarray | None = None


def available_scores(mean_map: bool, background: bool) -> list[str]:
    """The SCORES that can be computed: pristine_diff needs the mean pristine map,
    likelihood_ratio the background model's maps."""
    missing = {"pristine_diff": not mean_map, "likelihood_ratio": not background}
    return [s for s in SCORES if not missing.get(s, False)]


def _scores(batch: dict[str, np.ndarray], score: str, mean_map: np.ndarray | None) -> np.ndarray:
    return score_maps(batch["loglik_map"], score, mean_map, batch.get("background_map"))


def _masked(batch: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    keep = batch["has_mask"]
    return {k: v[keep] for k, v in batch.items()}, int(np.sum(~keep))


def choose_thresholds(
    likelihoods_dir: str,
    method: str,
    scores: Sequence[str],
    mean_map: np.ndarray | None,
    map_size: int = 64,
    background_dir: str | None = None,
) -> tuple[dict[str, tuple[int, float]], int]:
    """The val split's threshold per score: ({score: (bin index k, mean val IoU)},
    masked val frames). k maximises the mean IoU of `bin >= k` over the val fake frames
    with a mask, among the quantile candidates of the pooled val scores."""
    iou_sum = {s: np.zeros(BINS + 1) for s in scores}
    total = {s: np.zeros(BINS, np.int64) for s in scores}
    frames = 0
    for batch in read_batches(likelihoods_dir, "val", method, map_size, background_dir):
        batch, _ = _masked(batch)
        if not len(batch["video"]):
            continue
        frames += len(batch["video"])
        positive = batch["mask"].reshape(len(batch["mask"]), -1) > 0
        for s in scores:
            index = bin_index(_scores(batch, s, mean_map), s)
            pos, neg = frame_histograms(index.reshape(len(index), -1), positive)
            iou_sum[s] += iou_curve(pos, neg).sum(axis=0)
            total[s] += (pos + neg).sum(axis=0)
    chosen = {}
    for s in scores:
        if frames == 0:
            continue
        candidates = quantile_candidates(total[s])
        best = int(candidates[np.argmax(iou_sum[s][candidates])])
        chosen[s] = (best, float(iou_sum[s][best] / frames))
    return chosen, frames


def _bootstrap(
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


def _interval(samples: np.ndarray) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return math.nan, math.nan
    low, high = np.quantile(samples, [0.025, 0.975])
    return float(low), float(high)


def score_method(
    likelihoods_dir: str,
    method: str,
    mean_map: np.ndarray | None,
    bootstrap_samples: int = 200,
    seed: int = 0,
    map_size: int = 64,
    background_dir: str | None = None,
) -> tuple[list[dict], _Example | None]:
    """The localisation rows of one method (one per score) and the figure's frame.

    Reads `val/<method>` once (thresholds) and `test/<method>` twice (metrics, then
    the shuffled-mask control); `background_dir` (complete for the method) adds the
    likelihood_ratio score.
    """
    scores = available_scores(mean_map is not None, background_dir is not None)
    thresholds, val_frames = choose_thresholds(
        likelihoods_dir, method, scores, mean_map, map_size, background_dir
    )
    videos: dict[str, int] = {}
    frame_video: list[int] = []
    packed_masks: list[np.ndarray] = []
    video_pos = {s: [] for s in scores}
    video_neg = {s: [] for s in scores}
    frame_sums = {s: [] for s in scores}  # per video [sum AUC, sum AP, frames with AUC]
    iou_values = {s: [] for s in scores}
    clipped = {s: 0 for s in scores}
    without_mask = degenerate = 0
    example = None
    for batch in read_batches(likelihoods_dir, "test", method, map_size, background_dir):
        batch, missing = _masked(batch)
        without_mask += missing
        b = len(batch["video"])
        if b == 0:
            continue
        positive = batch["mask"].reshape(b, -1) > 0
        fraction = positive.mean(axis=1)
        degenerate += int(np.sum((fraction == 0) | (fraction == 1)))
        for name in batch["video"]:
            if name not in videos:
                videos[name] = len(videos)
                for s in scores:
                    video_pos[s].append(np.zeros(BINS, np.int64))
                    video_neg[s].append(np.zeros(BINS, np.int64))
                    frame_sums[s].append(np.zeros(3))
        index_of = np.array([videos[v] for v in batch["video"]])
        frame_video += index_of.tolist()
        packed_masks += list(np.packbits(positive, axis=1))
        if example is None:
            good = np.flatnonzero((fraction > 0) & (fraction < 1))
            if good.size:
                i = int(good[0])
                example = _Example(
                    batch["video"][i],
                    int(batch["frame"][i]),
                    batch["loglik_map"][i],
                    batch["mask"][i],
                    batch["background_map"][i] if "background_map" in batch else None,
                )
        for s in scores:
            values = _scores(batch, s, mean_map).reshape(b, -1)
            low, high = SCORE_RANGES[s]
            clipped[s] += int(np.sum((values < low) | (values >= high)))
            index = bin_index(values, s)
            pos, neg = frame_histograms(index, positive)
            for j, v in enumerate(index_of):
                video_pos[s][v] += pos[j]
                video_neg[s][v] += neg[j]
            auc, ap = frame_auc_ap(values, positive)
            for j in np.flatnonzero(np.isfinite(auc)):
                frame_sums[s][index_of[j]] += (auc[j], ap[j], 1.0)
            if s in thresholds:
                iou_values[s] += iou_curve(pos, neg)[:, thresholds[s][0]].tolist()
    n = len(frame_video)
    # The control: each frame's scores against another frame's mask.
    control = {s: (np.zeros(BINS, np.int64), np.zeros(BINS, np.int64)) for s in scores}
    if n:
        source, same = derangement(np.array(list(videos))[frame_video], seed)
        if same:
            logging.warning(
                "%s: %d of %d frames keep a mask of their own video in the control (too few "
                "videos).",
                method,
                same,
                n,
            )
        start = 0
        for batch in read_batches(likelihoods_dir, "test", method, map_size, background_dir):
            batch, _ = _masked(batch)
            b = len(batch["video"])
            if b == 0:
                continue
            packed = np.stack([packed_masks[k] for k in source[start : start + b]])
            shuffled = np.unpackbits(packed, axis=1, count=map_size * map_size).astype(bool)
            start += b
            for s in scores:
                values = _scores(batch, s, mean_map).reshape(b, -1)
                pos, neg = frame_histograms(bin_index(values, s), shuffled)
                control[s][0][:] += pos.sum(axis=0)
                control[s][1][:] += neg.sum(axis=0)
    v = len(videos)
    weights = None
    if v and bootstrap_samples:
        draws = np.random.default_rng(seed).integers(0, v, size=(bootstrap_samples, v))
        weights = np.stack([np.bincount(d, minlength=v) for d in draws]).astype(np.float64)
    rows = []
    for s in scores:
        row = {c: math.nan for c in COLUMNS}
        row.update(
            method=method,
            score=s,
            videos=v,
            frames=n,
            frames_without_mask=without_mask,
            frames_degenerate=degenerate,
            val_frames=val_frames,
        )
        if n:
            pos, neg = np.sum(video_pos[s], axis=0), np.sum(video_neg[s], axis=0)
            sums = np.sum(frame_sums[s], axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                row.update(
                    mask_fraction=float(pos.sum() / (pos.sum() + neg.sum())),
                    pixel_auc=float(histogram_auc(pos, neg)),
                    pixel_ap=float(histogram_ap(pos, neg)),
                    frame_auc_mean=float(sums[0] / sums[2]) if sums[2] else math.nan,
                    frame_ap_mean=float(sums[1] / sums[2]) if sums[2] else math.nan,
                    control_pixel_auc=float(histogram_auc(*control[s])),
                    clipped_fraction=clipped[s] / (n * map_size * map_size),
                )
            if weights is not None:
                replicates = _bootstrap(
                    np.stack(video_pos[s]), np.stack(video_neg[s]), np.stack(frame_sums[s]), weights
                )
                for name, samples in replicates.items():
                    row[f"{name}_low"], row[f"{name}_high"] = _interval(samples)
        if s in thresholds and iou_values[s]:
            k, val_iou = thresholds[s]
            row.update(
                iou=float(np.mean(iou_values[s])), iou_threshold=bin_edge(s, k), val_iou=val_iou
            )
        rows.append(row)
    return rows, example


# --- outputs ------------------------------------------------------------------------


def _format(value, column: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.4f}" if column != "clipped_fraction" else f"{value:.2e}"


def notes(mean_map_available: bool, background_rate: float | None = None) -> list[str]:
    """What each score and column is (the md and tex notes); `background_rate`: the
    background model's perturbation rate (None: no background maps)."""
    lines = [
        "Localisation against the manipulation masks (mask > 0 = manipulated pixel), "
        "test split, fake frames with a mask; originals not scored.",
        SCORE_NOTES["neg_loglik"],
        SCORE_NOTES["pristine_diff"]
        if mean_map_available
        else "pristine_diff: not computed (no train-split original maps).",
        SCORE_NOTES["likelihood_ratio"].format(rate=f"{background_rate:.0%}")
        if background_rate is not None
        else "likelihood_ratio: not computed (no background model maps: train_ubm "
        "--background, then extract_likelihoods --background).",
        "pixel_auc/pixel_ap: pooled over every pixel of every frame (4096-bin histograms); "
        "frame_*_mean: mean over frames whose mask is neither all 0 nor all 1 "
        "(frames_degenerate: left out); [low, high]: 95% bootstrap interval, videos "
        "resampled.",
        "iou: mean test IoU of score >= iou_threshold, the threshold maximising the mean "
        "IoU on the val split's fake frames (val_iou), among its score quantiles.",
        "control_pixel_auc: pooled AUC with the masks permuted across frames of other "
        "videos: what the masks' usual place alone is worth (0.5 where masks fall "
        "anywhere); compare pixel_auc with it.",
        "mask area: share of manipulated pixels (the AP of a random score; the IoU of "
        "marking every pixel).",
        "frames_without_mask: fake test frames without a mask, left out.",
    ]
    return lines


def to_csv(rows: Sequence[dict], header: str) -> str:
    """`# header`, then one line per row with COLUMNS (NaN as empty)."""
    lines = [f"# {header}", ",".join(COLUMNS)]
    for row in rows:
        fields = []
        for c in COLUMNS:
            text = _format(row[c], c)
            fields.append("" if text == "n/a" else text)
        lines.append(",".join(fields))
    return "\n".join(lines) + "\n"


_SHOWN = (
    ("method", "method"),
    ("score", "score"),
    ("frames", "frames"),
    ("frames_without_mask", "no mask"),
    ("mask_fraction", "mask area"),
    ("pixel_auc", "pixel AUC"),
    ("pixel_ap", "pixel AP"),
    ("frame_auc_mean", "frame AUC"),
    ("frame_ap_mean", "frame AP"),
    ("iou", "IoU"),
    ("iou_threshold", "threshold"),
    ("control_pixel_auc", "control AUC"),
)


def _cell(row: dict, column: str) -> str:
    if column == "method":
        return abbreviation(row["method"])
    text = _format(row[column], column)
    prefix = {"pixel_auc": "pixel_auc", "pixel_ap": "pixel_ap"}.get(column)
    prefix = prefix or {"frame_auc_mean": "frame_auc", "frame_ap_mean": "frame_ap"}.get(column)
    if prefix and text != "n/a" and np.isfinite(row[f"{prefix}_low"]):
        text += f" [{row[f'{prefix}_low']:.3f}, {row[f'{prefix}_high']:.3f}]"
    return text


def to_markdown(rows: Sequence[dict], header: str, note_lines: Sequence[str]) -> str:
    """The header line in italics, the table, the notes."""
    lines = [f"_{header}_", "", "| " + " | ".join(label for _, label in _SHOWN) + " |"]
    lines.append("|" + "---|" * len(_SHOWN))
    for row in rows:
        lines.append("| " + " | ".join(_cell(row, c) for c, _ in _SHOWN) + " |")
    lines.append("")
    lines += [f"- {n}" for n in note_lines]
    return "\n".join(lines) + "\n"


def to_latex(rows: Sequence[dict], header: str, note_lines: Sequence[str]) -> str:
    """A booktabs table with the markdown's content."""
    tex = report.escape_tex
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{tex(note_lines[0])} {tex(header)}}}",
        r"\label{tab:localisation}",
        rf"\begin{{tabular}}{{ll{'c' * (len(_SHOWN) - 2)}}}",
        r"\toprule",
        " & ".join(tex(label) for _, label in _SHOWN) + r" \\",
        r"\midrule",
    ]
    for row in rows:
        lines.append(" & ".join(tex(_cell(row, c)) for c, _ in _SHOWN) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\footnotesize {tex(n)}" for n in note_lines[1:]]
    lines.append(r"\end{table}")
    return "\n".join(lines) + f"\n% {header}\n"


def _overlap(predicted: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGB [S, S, 3]: green both, red predicted only, blue mask only, black neither."""
    rgb = np.zeros((*mask.shape, 3))
    rgb[predicted & mask] = (0.1, 0.8, 0.1)
    rgb[predicted & ~mask] = (0.9, 0.1, 0.1)
    rgb[~predicted & mask] = (0.1, 0.3, 0.9)
    return rgb


def plot_examples(
    likelihoods_dir: str,
    examples: dict[str, _Example],
    rows: Sequence[dict],
    mean_map: np.ndarray | None,
    path: str,
) -> None:
    """Per method a row: face crop, mask, then per score its map and the overlap of the
    map thresholded at the val threshold with the mask (a score a method lacks: blank)."""
    thresholds = {(r["method"], r["score"]): r["iou_threshold"] for r in rows}
    scores = [s for s in SCORES if any(r["score"] == s for r in rows)]
    columns = 2 + 2 * len(scores)
    fig = Figure(figsize=(2.0 * columns, 2.2 * max(len(examples), 1) + 0.6))
    axes = fig.subplots(max(len(examples), 1), columns, squeeze=False)
    for i, (method, ex) in enumerate(examples.items()):
        image = _face_image(likelihoods_dir, method, ex)
        mask = ex.mask > 0
        panels = [(image, f"{abbreviation(method)} {ex.video} #{ex.frame}", None)]
        panels.append((mask, "mask", "gray"))
        for s in scores:
            if s == "likelihood_ratio" and ex.background is None:
                panels += [(None, f"{s}: no background maps", None)] * 2
                continue
            background = None if ex.background is None else ex.background[None]
            values = score_maps(ex.loglik[None], s, mean_map, background)[0]
            panels.append((values, s, "magma"))
            threshold = thresholds.get((method, s), math.nan)
            if np.isfinite(threshold):
                panels.append(
                    (_overlap(values >= threshold, mask), f"{s} >= {threshold:.2f}", None)
                )
            else:
                panels.append((np.zeros((*mask.shape, 3)), f"{s}: no val threshold", None))
        for ax, (picture, title, cmap) in zip(axes[i], panels, strict=True):
            if picture is not None:
                ax.imshow(picture, cmap=cmap)
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(
        "Localisation (test split): overlap green = both, red = score only, blue = mask only"
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def _face_image(likelihoods_dir: str, method: str, ex: _Example) -> np.ndarray | None:
    path = os.path.join(likelihoods_dir, "test", method, ex.video + SHARD_SUFFIX)
    for raw in tf.data.TFRecordDataset(path):
        record = likelihood_records.parse_likelihood_numpy(raw.numpy())
        if record.face.frame == ex.frame:
            return record.face.image
    return None


def background_maps(workdir: Workdir) -> tuple[str | None, float | None]:
    """(the background maps folder, the background model's perturbation rate), or
    (None, None) where `extract_likelihoods --background` has not run.

    Raises:
      ValueError: the background maps are not of a background model (rate 0 or
        unknown).
    """
    folder = workdir.background_likelihoods
    config = read_json(os.path.join(folder, CONFIG_FILE))
    if config is None:
        return None, None
    ubm_config = read_json(os.path.join(config.get("ubm_dir") or "", CONFIG_FILE)) or {}
    rate = (ubm_config.get("ubm") or {}).get("perturbation_rate")
    if not rate:
        raise ValueError(
            f"{folder!r} holds maps of {config.get('ubm_dir')!r}, which is no background model "
            "(perturbation_rate 0 or unknown): delete the folder and run extract_likelihoods "
            "--background with the model of train_ubm --background."
        )
    faces = (read_json(os.path.join(workdir.likelihoods, CONFIG_FILE)) or {}).get("faces_dir")
    background_faces = config.get("faces_dir")
    if faces and background_faces and os.path.realpath(faces) != os.path.realpath(background_faces):
        # Records are paired by video and frame (checked on reading); the crops behind
        # them could still differ.
        logging.warning(
            "The background maps in %s are of the crops in %r, the UBM's maps of those in %r: "
            "check that both are the same face crops.",
            folder,
            background_faces,
            faces,
        )
    return folder, float(rate)


def score_localisation(
    workdir: Workdir, config_name: str | None = None, bootstrap_samples: int = 200, seed: int = 0
) -> list[str]:
    """Scores every method found in the maps; writes `results/localisation.{csv,md,tex}`
    and `results/fig_localisation.png`; returns the paths.

    Raises:
      FileNotFoundError: no likelihood maps in the workdir.
      PermissionError: `results/` cannot be written.
    """
    likelihoods_dir = workdir.likelihoods
    methods = data_lib.find_methods(likelihoods_dir)  # raises without any maps
    check_writable(workdir.results)
    info = tables.describe_run(workdir)
    if info["config"] == "unknown" and config_name:
        info["config"] = config_name
    header = tables.header_line(info)
    mean_map = pristine_mean_map(likelihoods_dir)
    if mean_map is None:
        logging.warning("No train-split original maps: pristine_diff is not computed.")
    background_dir, background_rate = background_maps(workdir)
    rows, examples = [], {}
    for method in methods:
        method_background = background_dir
        if background_dir and not background_shards_complete(
            likelihoods_dir, background_dir, method
        ):
            logging.warning(
                "%s: some val/test shards have no background map in %s: likelihood_ratio is "
                "not computed for it (re-run extract_likelihoods --background).",
                method,
                background_dir,
            )
            method_background = None
        method_rows, example = score_method(
            likelihoods_dir,
            method,
            mean_map,
            bootstrap_samples=bootstrap_samples,
            seed=seed,
            background_dir=method_background,
        )
        rows += method_rows
        if example is not None:
            examples[method] = example
        for row in method_rows:
            logging.info(
                "%s %s: %d frames (%d without a mask), pixel AUC %.3f, control %.3f, IoU %.3f",
                method,
                row["score"],
                row["frames"],
                row["frames_without_mask"],
                row["pixel_auc"],
                row["control_pixel_auc"],
                row["iou"],
            )
    note_lines = notes(mean_map is not None, background_rate)
    paths = []
    for name, text in (
        (CSV, to_csv(rows, header)),
        (MARKDOWN, to_markdown(rows, header, note_lines)),
        (LATEX, to_latex(rows, header, note_lines)),
    ):
        path = os.path.join(workdir.results, name)
        write_text_atomically(path, text)
        paths.append(path)
    figure = os.path.join(workdir.results, FIGURE)
    plot_examples(likelihoods_dir, examples, rows, mean_map, figure)
    return paths + [figure]
