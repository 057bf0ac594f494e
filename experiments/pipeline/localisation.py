"""Localisation: do the UBM's per-pixel log-likelihood maps point at the manipulated pixels?

Khodabakhsh & Busch (BIOSIG 2020) classify whole frames from the per-pixel maps
`log p(x_i | x_<i)` of a PixelCNN++ trained on pristine faces; the maps are meant to be
low where a face was manipulated. This stage measures that against the manipulation
masks (FF++ `masks/` videos, cropped with the face box by the face stage; mask > 0 is
a manipulated pixel) on the test split, per method, for fake frames that have a mask
(frames without one are counted and left out; originals are not scored). Three
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

This module runs the stage (`score_method`, `score_localisation`); reading the maps and
the scores live in `localisation_maps`, the binned metrics and the bootstrap in
`localisation_metrics`, the table and the figure in `localisation_report`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from absl import logging

from classifier import data as data_lib
from data_prep.files import check_writable
from experiments.pipeline import report, run_log, tables
from experiments.pipeline.localisation_maps import (
    SCORES,
    background_maps,
    background_shards_complete,
    pristine_mean_map,
    read_batches,
    score_maps,
)
from experiments.pipeline.localisation_metrics import (
    BINS,
    SCORE_RANGES,
    bin_edge,
    bin_index,
    bootstrap_replicates,
    derangement,
    frame_auc_ap,
    frame_histograms,
    histogram_ap,
    histogram_auc,
    interval,
    iou_curve,
    quantile_candidates,
)
from experiments.pipeline.localisation_report import (
    COLUMNS,
    NAME,
    Example,
    notes,
    plot_examples,
    to_report,
)
from experiments.pipeline.workdir import Workdir

CSV, MARKDOWN, LATEX = (f"{NAME}.{ext}" for ext in report.EXTENSIONS)
FIGURE = "fig_localisation.png"


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


def score_method(
    likelihoods_dir: str,
    method: str,
    mean_map: np.ndarray | None,
    bootstrap_samples: int = 200,
    seed: int = 0,
    map_size: int = 64,
    background_dir: str | None = None,
) -> tuple[list[dict], Example | None]:
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
                example = Example(
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
                replicates = bootstrap_replicates(
                    np.stack(video_pos[s]), np.stack(video_neg[s]), np.stack(frame_sums[s]), weights
                )
                for name, samples in replicates.items():
                    row[f"{name}_low"], row[f"{name}_high"] = interval(samples)
        if s in thresholds and iou_values[s]:
            k, val_iou = thresholds[s]
            row.update(
                iou=float(np.mean(iou_values[s])), iou_threshold=bin_edge(s, k), val_iou=val_iou
            )
        rows.append(row)
    return rows, example


def score_localisation(
    workdir: Workdir, config_name: str | None = None, bootstrap_samples: int = 200, seed: int = 0
) -> list[str]:
    """Scores every method found in the maps; writes `results/localisation.{csv,md,tex}`
    (its notes also to `results/run.json`) and `results/fig_localisation.png`; returns
    the paths.

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
    table = to_report(rows, header, notes(mean_map is not None, background_rate))
    paths = report.write_report(table, workdir.results)
    run_log.write_run_json(workdir, {table.name: table.record()})
    figure = os.path.join(workdir.results, FIGURE)
    plot_examples(likelihoods_dir, examples, rows, mean_map, figure)
    return paths + [figure]
