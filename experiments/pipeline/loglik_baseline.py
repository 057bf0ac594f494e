"""The image log-likelihood as a detector: the baseline beside the LeNet on maps.

The paper (Khodabakhsh & Busch, BIOSIG 2020, Fig. 3) argues that the UBM's image
log-likelihood alone does not separate real from fake crops, which is why it feeds
the per-pixel maps to a classifier. This module makes that argument quantitative from
the saved likelihood shards, per method and protocol, with two scores (higher = more
likely fake):

- `loglik`: s(x) = -log p(x), the image's negative log-likelihood in nats (the
  `image_loglik` feature, the sum of the map).
- `complexity`: Serra et al. (ICLR 2020, "Input complexity and out-of-distribution
  detection with likelihood-based generative models"), S(x) = -log2 p(x) - L(x),
  both in bits: the negative log-likelihood minus the image's own complexity L(x),
  the PNG-compressed size of the crop in bits (OpenCV, compression level 9, 8 bits per
  byte of the encoded file). Positive S means the UBM finds the crop harder to code
  than a generic lossless compressor does: more anomalous.

Each protocol's test frames are scored with a threshold chosen on its val frames
(the one maximising class-balanced accuracy there), as the LeNet's selection never
sees the test split:
- known (Table 1): val = real + X val frames, test = real + X test frames;
- loo (Table 2): val = real + every other method's val frames (never X), test = real +
  X test frames.

Shards are streamed one folder (split, source) at a time, keeping only per-frame
scalars (log-likelihood, complexity, label), so memory grows with the frame count by
a few bytes each, never with the images.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import cv2
import numpy as np

from classifier import data as data_lib
from classifier import metrics
from data_prep import likelihood_records
from data_prep.methods import ORIGINAL

SCORES: tuple[str, ...] = ("loglik", "complexity")
SCORE_LABELS = {
    "loglik": "-image log-likelihood",
    "complexity": "complexity-corrected (Serra et al. 2020)",
}
_PNG_LEVEL = 9
_BATCH = 256

# What one frame's score needs: the image log-likelihood, the crop (for its PNG size)
# and the record's split, method and label (to keep a folder's own records only).
_FIELDS = (
    *likelihood_records.IMAGE_LOGLIK_FIELDS,
    *likelihood_records.IMAGE_FIELDS,
    "split",
    "method",
    "label",
)


@dataclasses.dataclass(frozen=True)
class FrameScalars:
    """Per-frame scalars of one folder: all [N]."""

    image_loglik: np.ndarray  # float64, nats (log p(x), <= 0 for a proper density)
    complexity_bits: np.ndarray  # float64, PNG size of the crop in bits
    labels: np.ndarray  # int64, 0 real, 1 fake

    def __len__(self) -> int:
        return len(self.labels)


def _concat(parts: Sequence[FrameScalars]) -> FrameScalars:
    if not parts:
        return FrameScalars(np.zeros(0), np.zeros(0), np.zeros(0, np.int64))
    return FrameScalars(
        *(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(parts[0]))
    )


def png_complexity_bits(crop_rgb: np.ndarray) -> int:
    """L(x): the PNG size (OpenCV, level 9) of a uint8 [H, W, 3] RGB crop, in bits."""
    bgr = cv2.cvtColor(np.ascontiguousarray(crop_rgb, np.uint8), cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, _PNG_LEVEL])
    if not ok:
        raise ValueError(f"OpenCV could not PNG-encode a crop of shape {crop_rgb.shape}.")
    return 8 * len(encoded)


def loglik_score(image_loglik: np.ndarray) -> np.ndarray:
    """s(x) = -log p(x) (nats) per frame: higher = less likely = more likely fake."""
    return -np.asarray(image_loglik, np.float64)


def complexity_score(image_loglik: np.ndarray, complexity_bits: np.ndarray) -> np.ndarray:
    """Serra et al.'s S(x) = (-log2 p(x)) - L(x), in bits; higher = more anomalous.

    `image_loglik` is log p(x) in nats (natural log): -log2 p(x) = -log p(x) / ln 2.
    """
    nll_bits = -np.asarray(image_loglik, np.float64) / math.log(2.0)
    return nll_bits - np.asarray(complexity_bits, np.float64)


def read_folder(likelihoods_dir: str, split: str, source: str) -> FrameScalars:
    """The per-frame scalars of `<split>/<source>/` (empty where it has no shards).

    Only the folder's own records (record split and method as the folder says) count,
    as `classifier.data` reads them.
    """
    shards = data_lib.folder_shards(likelihoods_dir, split, source)
    if not shards:
        return _concat([])

    parts = []
    dataset = likelihood_records.read_records(shards, _FIELDS)
    for batch in dataset.batch(_BATCH).prefetch(1):
        keep = (batch["split"].numpy().astype(str) == split) & (
            batch["method"].numpy().astype(str) == source
        )
        if not np.any(keep):
            continue
        raws, sizes = batch["image"].numpy()[keep], batch["image_size"].numpy()[keep]
        bits = [
            png_complexity_bits(np.frombuffer(raw, np.uint8).reshape(int(h), int(w), 3))
            for raw, (h, w) in zip(raws, sizes, strict=True)
        ]
        parts.append(
            FrameScalars(
                image_loglik=batch["image_loglik"].numpy()[keep].astype(np.float64),
                complexity_bits=np.asarray(bits, np.float64),
                labels=batch["label"].numpy()[keep].astype(np.int64),
            )
        )
    return _concat(parts)


def evaluate_score(
    val_labels: np.ndarray, val_scores: np.ndarray, test_labels: np.ndarray, test_scores: np.ndarray
) -> dict[str, float]:
    """{"threshold" (chosen on val), "val_balanced_accuracy", "frame_accuracy",
    "frame_auc"} (fractions; test metrics on the test frames, accuracy at the val
    threshold)."""
    threshold = metrics.balanced_threshold(val_labels, val_scores)
    val_pred = np.asarray(val_scores) >= threshold
    val_labels = np.asarray(val_labels)
    val_balanced = 0.5 * (np.mean(val_pred[val_labels == 1]) + np.mean(~val_pred[val_labels == 0]))
    return {
        "threshold": threshold,
        "val_balanced_accuracy": float(val_balanced),
        "frame_accuracy": metrics.accuracy(test_labels, test_scores, threshold),
        "frame_auc": metrics.auc(test_labels, test_scores),
    }


def _scores(frames: FrameScalars, score: str) -> np.ndarray:
    if score == "loglik":
        return loglik_score(frames.image_loglik)
    return complexity_score(frames.image_loglik, frames.complexity_bits)


def protocol_sources(protocol: str, method: str, pool: Sequence[str]) -> tuple[tuple, tuple]:
    """(val sources, test sources) of the baseline for `protocol` ("known" or "loo")."""
    if protocol == "known":
        return (ORIGINAL, method), (ORIGINAL, method)
    if protocol == "loo":
        return (ORIGINAL, *(m for m in pool if m != method)), (ORIGINAL, method)
    raise ValueError(f"Unknown protocol {protocol!r} for the baseline: use 'known' or 'loo'.")


def baseline_results(
    likelihoods_dir: str, protocols: Sequence[str] = ("known", "loo")
) -> dict[str, dict[str, dict[str, dict[str, float] | str]]]:
    """Both baselines for every method of the data and every protocol.

    Reads each val/test folder once. Returns
    {protocol: {method: {score: evaluate_score's dict, or a str saying why not}}}.

    Raises:
      FileNotFoundError: `likelihoods_dir` holds no likelihood shards.
    """
    pool = data_lib.find_methods(likelihoods_dir)
    folders = {
        (split, source): read_folder(likelihoods_dir, split, source)
        for split in ("val", "test")
        for source in (ORIGINAL, *pool)
    }
    results: dict = {}
    for protocol in protocols:
        results[protocol] = {}
        for method in pool:
            val_sources, test_sources = protocol_sources(protocol, method, pool)
            val = _concat([folders[("val", s)] for s in val_sources])
            test = _concat([folders[("test", s)] for s in test_sources])
            entry: dict = {}
            for score in SCORES:
                if len(np.unique(val.labels)) < 2 or len(np.unique(test.labels)) < 2:
                    entry[score] = "val or test frames lack real or fake examples"
                    continue
                entry[score] = evaluate_score(
                    val.labels, _scores(val, score), test.labels, _scores(test, score)
                )
            results[protocol][method] = entry
    return results
