"""Localisation on still images with manipulation masks (e.g. FF++ example frames).

A folder of images `NAME.png` (any of `data_prep.media.IMAGE_EXTENSIONS`), each with an
optional mask `NAME_mask.png` beside it (white where manipulated), is scored with a
trained UBM and, optionally, a background model: the largest face of each image is found
and cropped as in training (`FaceSettings`), its mask cut with the same box
(`face_detection.crop_mask`), and the crop mapped by both models. Per image: the image
log-likelihood, its PNG complexity (Serra et al., ICLR 2020), and where there is a mask
the pixel AUC and AP of the per-pixel scores `neg_loglik` and `likelihood_ratio` (see
`localisation`), exact (sklearn over the crop's pixels). Written to
`OUT/images.{csv,md,tex}` (`report`) and `OUT/fig_images.png` (the first
`FIGURE_IMAGES` images).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

import cv2
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn import metrics as sk_metrics

from data_prep.face_detection import FaceDetector, crop_box, crop_face, crop_mask, track_faces
from data_prep.face_settings import FaceSettings
from data_prep.files import atomic_path, check_writable
from data_prep.media import IMAGE_EXTENSIONS
from experiments.pipeline import report
from experiments.pipeline.loglik_baseline import png_complexity_bits
from pixelcnn_pp import likelihood

MASK_SUFFIX = "_mask"
NAME = "images"
CSV, MARKDOWN, LATEX = (f"{NAME}.{ext}" for ext in report.EXTENSIONS)
FIGURE = "fig_images.png"
FIGURE_IMAGES = 12  # rows of the figure: the first images; only these are kept in memory
COLUMNS: tuple[str, ...] = (
    "image",
    "mask",
    "mask_fraction",
    "image_loglik",
    "background_image_loglik",
    "complexity_bits",
    "neg_loglik_pixel_auc",
    "neg_loglik_pixel_ap",
    "likelihood_ratio_pixel_auc",
    "likelihood_ratio_pixel_ap",
    "box",
)


class NoImagesError(FileNotFoundError):
    """The folder holds no image to score."""


@dataclasses.dataclass
class ScoredImage:
    """One image: `crop` uint8 [S, S, 3], `mask` uint8 [S, S] or None, `loglik` and
    `background` float32 [S, S] maps (background None without that model)."""

    name: str
    box: tuple[int, int, int, int]
    crop: np.ndarray
    mask: np.ndarray | None
    loglik: np.ndarray
    background: np.ndarray | None

    def scores(self) -> dict[str, np.ndarray]:
        """Per-pixel anomaly scores [S, S] (higher = more anomalous)."""
        out = {"neg_loglik": -self.loglik.astype(np.float64)}
        if self.background is not None:
            out["likelihood_ratio"] = self.background.astype(np.float64) - self.loglik
        return out


def find_images(folder: str) -> list[tuple[str, str | None]]:
    """(image path, mask path or None) for every image of `folder` that is not a mask,
    sorted by name.

    Raises:
      NoImagesError: the folder is missing or holds no image.
    """
    if not os.path.isdir(folder):
        raise NoImagesError(f"{folder!r} is not a folder: pass the folder of images to score.")
    by_stem = {}
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        if ext.lower() in IMAGE_EXTENSIONS:
            by_stem.setdefault(stem, os.path.join(folder, name))
    pairs = [
        (path, by_stem.get(stem + MASK_SUFFIX))
        for stem, path in by_stem.items()
        if not stem.endswith(MASK_SUFFIX)
    ]
    if not pairs:
        raise NoImagesError(
            f"{folder!r} holds no image ({', '.join(IMAGE_EXTENSIONS)}) other than masks "
            f"(NAME{MASK_SUFFIX}.png)."
        )
    return pairs


def crop_image(
    image_path: str, mask_path: str | None, settings: FaceSettings, detector: FaceDetector
) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray | None]:
    """(box, RGB crop uint8 [S, S, 3], mask crop uint8 [S, S] or None) of the image's
    largest face, found and cut as in training.

    Raises:
      ValueError: the image or its mask cannot be read, they differ in size, or no face.
    """
    frame = cv2.imread(image_path, cv2.IMREAD_COLOR)
    if frame is None:
        raise ValueError(f"Cannot read {image_path!r} as an image.")
    _, _, face = next(track_faces(iter([(0, frame)]), detector, settings.face_finder))
    height, width = frame.shape[:2]
    box = crop_box(face, width, height, settings.crop_scale) if face is not None else None
    if box is None:
        raise ValueError(f"No face found in {image_path!r}.")
    mask = None
    if mask_path is not None:
        mask_frame = cv2.imread(mask_path, cv2.IMREAD_GRAYSCALE)
        if mask_frame is None:
            raise ValueError(f"Cannot read the mask {mask_path!r} as an image.")
        if mask_frame.shape != (height, width):
            raise ValueError(
                f"The mask {mask_path!r} is {mask_frame.shape[1]}x{mask_frame.shape[0]}, its "
                f"image {width}x{height}: a mask must be the size of its image."
            )
        mask = crop_mask(mask_frame, box, settings.crop_size)
    return box, crop_face(frame, box, settings.crop_size), mask


def _pixel_metrics(score: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    positive = mask.reshape(-1) > 0
    if positive.all() or not positive.any():
        return math.nan, math.nan
    values = score.reshape(-1)
    return (
        float(sk_metrics.roc_auc_score(positive, values)),
        float(sk_metrics.average_precision_score(positive, values)),
    )


def image_row(image: ScoredImage) -> dict:
    """The CSV row of one scored image (NaN where a value does not apply)."""
    row = {c: math.nan for c in COLUMNS}
    row.update(
        image=image.name,
        mask="yes" if image.mask is not None else "no",
        image_loglik=float(image.loglik.sum(dtype=np.float64)),
        complexity_bits=float(png_complexity_bits(image.crop)),
        box=" ".join(str(v) for v in image.box),
    )
    if image.background is not None:
        row["background_image_loglik"] = float(image.background.sum(dtype=np.float64))
    if image.mask is not None:
        row["mask_fraction"] = float(np.mean(image.mask > 0))
        for score, values in image.scores().items():
            auc, ap = _pixel_metrics(values, image.mask)
            row[f"{score}_pixel_auc"], row[f"{score}_pixel_ap"] = auc, ap
    return row


CAPTION = (
    "Localisation on still images: per image the face crop's log-likelihood and, against "
    "its mask, the pixel AUC and AP of each per-pixel score."
)
NOTES = (
    "image_loglik: the crop's log-likelihood under the UBM (nats); "
    "background_image_loglik: under the background model; complexity_bits: its PNG "
    "size (Serra et al., ICLR 2020).",
    "pixel AUC/AP against the mask cropped with the face's box: neg_loglik = -the "
    "UBM's map; likelihood_ratio = background map - UBM map (Ren et al., NeurIPS 2019).",
)


def _shown(value: str | float) -> str:
    if isinstance(value, str):
        return value
    return f"{value:.4f}" if np.isfinite(value) else "n/a"


def to_report(rows: Sequence[dict], header: str) -> report.Report:
    """The rows as a report: the CSV with COLUMNS, the text without the box."""
    shown = [c for c in COLUMNS if c != "box"]
    return report.Report(
        name=NAME,
        values=pd.DataFrame(
            [[row[c] for c in COLUMNS] for row in rows], columns=list(COLUMNS), dtype=object
        ),
        shown=pd.DataFrame([[_shown(row[c]) for c in shown] for row in rows], columns=shown),
        caption=CAPTION,
        header=header,
        notes=NOTES,
    )


def plot_images(images: Sequence[ScoredImage], path: str) -> None:
    """Per image a row: the crop, its mask, and each score's map."""
    columns = 2 + max(len(im.scores()) for im in images)
    fig = Figure(figsize=(2.2 * columns, 2.3 * len(images) + 0.4))
    axes = fig.subplots(len(images), columns, squeeze=False)
    for row, image in zip(axes, images, strict=True):
        has_mask = image.mask is not None
        panels = [(image.crop, image.name, None)]
        panels.append((image.mask, "mask" if has_mask else "no mask", "gray"))
        panels += [(values, score, "magma") for score, values in image.scores().items()]
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        # A row without the background model has fewer panels than columns.
        for ax, (picture, title, cmap) in zip(row, panels, strict=False):
            if picture is not None:
                ax.imshow(picture, cmap=cmap)
            ax.set_title(title, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def localise_images(
    folder: str,
    ubm_dir: str,
    out_dir: str,
    settings: FaceSettings,
    background_dir: str | None = None,
    header: str = "",
) -> list[dict]:
    """Scores every image of `folder` (see the module doc); returns the rows written.

    Images that cannot be read or show no face are logged in the rows' place by the
    caller: they raise nothing here but are returned with `image` and an `error` key.

    Raises:
      NoImagesError: no image in the folder.
      FileNotFoundError: no trained model in `ubm_dir` or `background_dir`.
      PermissionError: `out_dir` cannot be written.
    """
    pairs = find_images(folder)
    check_writable(out_dir)
    ubm = likelihood.load_ubm(ubm_dir)
    background = likelihood.load_ubm(background_dir) if background_dir else None
    detector = FaceDetector(settings.fast)
    scored, rows, failed = [], [], []
    for image_path, mask_path in pairs:
        name = os.path.basename(image_path)
        try:
            box, crop, mask = crop_image(image_path, mask_path, settings, detector)
        except ValueError as err:
            failed.append({"image": name, "error": str(err)})
            continue
        loglik = likelihood.likelihood_maps(ubm, crop[None], batch_size=1)[0][0]
        bg = None
        if background is not None:
            bg = likelihood.likelihood_maps(background, crop[None], batch_size=1)[0][0]
        image = ScoredImage(name, tuple(int(v) for v in box), crop, mask, loglik, bg)
        rows.append(image_row(image))
        if len(scored) < FIGURE_IMAGES:
            scored.append(image)
    if rows:
        report.write_report(to_report(rows, header), out_dir)
        plot_images(scored, os.path.join(out_dir, FIGURE))
    return rows + failed
