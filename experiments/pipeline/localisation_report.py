"""The localisation's outputs: its table (through `report`) and its figure.

One row per method and score (`COLUMNS`, as `localisation.score_method` gives them):
the CSV holds every column, the Markdown and LaTeX the main ones with their intervals,
and notes saying what each score and column is. The figure shows per method one test
frame: the crop, its mask, and per score its map and the overlap of the map thresholded
at the val threshold with the mask.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from data_prep.files import atomic_path
from data_prep.methods import abbreviation
from experiments.pipeline import report
from experiments.pipeline.localisation_maps import SCORES, face_image, score_maps

NAME = "localisation"
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


@dataclasses.dataclass
class Example:
    """The figure's frame: video, frame, loglik [S, S], mask [S, S], background map
    [S, S] (None without one)."""

    video: str
    frame: int
    loglik: np.ndarray
    mask: np.ndarray
    background: np.ndarray | None = None


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


def to_report(rows: Sequence[dict], header: str, note_lines: Sequence[str]) -> report.Report:
    """The rows as a report: the CSV with COLUMNS (clipped_fraction in %.2e), the text
    with the shown columns; `note_lines[0]` is the caption."""
    shown = [[_cell(row, c) for c, _ in _SHOWN] for row in rows]
    return report.Report(
        name=NAME,
        values=pd.DataFrame(
            [[row[c] for c in COLUMNS] for row in rows], columns=list(COLUMNS), dtype=object
        ),
        shown=pd.DataFrame(shown, columns=[label for _, label in _SHOWN]),
        caption=note_lines[0],
        header=header,
        notes=tuple(note_lines[1:]),
        label_columns=2,
        formats={"clipped_fraction": "%.2e"},
    )


def _overlap(predicted: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGB [S, S, 3]: green both, red predicted only, blue mask only, black neither."""
    rgb = np.zeros((*mask.shape, 3))
    rgb[predicted & mask] = (0.1, 0.8, 0.1)
    rgb[predicted & ~mask] = (0.9, 0.1, 0.1)
    rgb[~predicted & mask] = (0.1, 0.3, 0.9)
    return rgb


def plot_examples(
    likelihoods_dir: str,
    examples: dict[str, Example],
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
        image = face_image(likelihoods_dir, method, ex.video, ex.frame)
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
