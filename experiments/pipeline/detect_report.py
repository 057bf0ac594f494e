"""Scores inputs with a trained model and writes the detect report.

For a list of inputs (videos and images) and a `Detector` (experiments/pipeline/
detector.py) this writes, into one output folder,

    report.json        the model, threshold and, per input: path, kind, score (mean of
                       its frames' fake probabilities), 95% bootstrap interval over
                       frames (low, high), verdict ("fake"/"real" at the model's
                       threshold), frames (frame, score, box) or the error
    frames.csv         path, kind, frame, score, x0, y0, x1, y1 (one row per frame)
    frames/<key>/<frame>.png   three panels: the frame with the face box and the
                       likelihood map blended over the face as a heatmap, the 64x64
                       crop, and the map alone (same colours, one cell per pixel)
    videos/<key>.mp4   (videos) the scored frames with the heatmap overlay, 2 frames/s
                       (.avi with Motion-JPEG where OpenCV cannot write .mp4)
    plots/<key>.png    (videos) the fake probability of each scored frame over time
    report.html        one self-contained page (html_report.py)

`<key>` is `<input-stem>_<n>` with n the input's place in the list. The heatmap
colours (OpenCV's JET colormap) run from blue (likely) to red (unlikely); the range is
fixed per input: the 1st..99th percentile of all its maps' values (`MAP_PERCENTILES`),
so the frames of one input share one scale and a single outlier pixel does not wash
the rest out (the range is in report.json, `map_range`, in nats).

Memory: inputs are processed one at a time; a video's frames are decoded again one
by one to draw the panels and each panel is written and dropped. report.json,
frames.csv and report.html are written atomically once every input is done, so an
interrupted run leaves no report that looks finished.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from absl import logging

from data_prep import files
from experiments.pipeline import html_report
from experiments.pipeline.detect_inputs import ExpandedInputs, InputFile, input_keys

if TYPE_CHECKING:  # the detector loads TensorFlow; the drawing code does not need it
    from experiments.pipeline.detector import Detector, ScoredFaces

REPORT_JSON = "report.json"
FRAMES_CSV = "frames.csv"
REPORT_HTML = "report.html"
FRAMES_DIR = "frames"
VIDEOS_DIR = "videos"
PLOTS_DIR = "plots"
MAP_PERCENTILES = (1.0, 99.0)
PANEL_SIZE = 256  # pixels: the height of every panel
CAPTION_HEIGHT = 28
OVERLAY_ALPHA = 0.5  # weight of the heatmap blended over the face
OVERLAY_FPS = 2.0  # the overlay video shows the scored frames only, slowly
CSV_FIELDS = ("path", "kind", "frame", "score", "x0", "y0", "x1", "y1")
_RED_BGR = (0, 0, 255)
_GREEN_BGR = (0, 200, 0)


def map_range(maps: np.ndarray) -> tuple[float, float]:
    """(lo, hi) nats: the `MAP_PERCENTILES` of the values of maps [N, 64, 64]."""
    lo, hi = np.percentile(np.asarray(maps, np.float64), MAP_PERCENTILES)
    if not hi > lo:  # a constant map: any non-empty range draws it in one colour
        hi = lo + 1.0
    return float(lo), float(hi)


def unlikeliness(loglik: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """uint8 [H, W]: 255 where the map is at or below `lo` (unlikely), 0 at `hi`."""
    u = (hi - np.asarray(loglik, np.float64)) / (hi - lo)
    return np.round(255 * np.clip(u, 0.0, 1.0)).astype(np.uint8)


def heatmap(loglik: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """BGR uint8 [H, W, 3]: JET colours, red = unlikely, blue = likely."""
    return cv2.applyColorMap(unlikeliness(loglik, lo, hi), cv2.COLORMAP_JET)


def overlay(
    frame_bgr: np.ndarray, box: Iterable[int], loglik: np.ndarray, lo: float, hi: float, fake: bool
) -> np.ndarray:
    """The frame with the heatmap blended into the face box and the box drawn.

    Args:
      frame_bgr: uint8 [H, W, 3].
      box: x0, y0, x1, y1 of the crop in frame pixels (inside the frame).
      loglik: the crop's map [64, 64] (nats).
      fake: the frame's score is at or above the threshold (box drawn red, else green).

    Returns:
      a new uint8 [H, W, 3] image.
    """
    out = frame_bgr.copy()
    height, width = out.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 > x0 and y1 > y0:
        colours = cv2.resize(heatmap(loglik, lo, hi), (x1 - x0, y1 - y0), cv2.INTER_LINEAR)
        face = out[y0:y1, x0:x1]
        out[y0:y1, x0:x1] = cv2.addWeighted(face, 1 - OVERLAY_ALPHA, colours, OVERLAY_ALPHA, 0)
        thickness = max(1, round(max(height, width) / 300))
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), _RED_BGR if fake else _GREEN_BGR, thickness)
    return out


def _to_height(image: np.ndarray, height: int, nearest: bool = False) -> np.ndarray:
    h, w = image.shape[:2]
    width = max(1, round(w * height / h))
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA if h > height else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def panels(
    frame_bgr: np.ndarray,
    box: Iterable[int],
    crop_rgb: np.ndarray,
    loglik: np.ndarray,
    lo: float,
    hi: float,
    score: float,
    threshold: float,
    caption: str,
) -> np.ndarray:
    """One frame's figure: overlay | crop | map, each `PANEL_SIZE` high, captioned.

    Args:
      frame_bgr: the full frame uint8 [H, W, 3] (BGR, as OpenCV decodes it).
      box: the crop's x0, y0, x1, y1 in the frame.
      crop_rgb: the 64x64 crop the model scored, uint8 [64, 64, 3] RGB.
      loglik: its map float [64, 64] (nats); coloured over [lo, hi], red = unlikely.
      score: its fake probability; threshold: the model's.
      caption: the text above the panels (e.g. the input and frame).

    Returns:
      BGR uint8 [CAPTION_HEIGHT + PANEL_SIZE, W', 3].
    """
    fake = score >= threshold
    left = _to_height(overlay(frame_bgr, box, loglik, lo, hi, fake), PANEL_SIZE)
    crop = _to_height(
        cv2.cvtColor(np.asarray(crop_rgb, np.uint8), cv2.COLOR_RGB2BGR), PANEL_SIZE, True
    )
    raw = _to_height(heatmap(loglik, lo, hi), PANEL_SIZE, nearest=True)
    gap = np.full((PANEL_SIZE, 4, 3), 255, np.uint8)
    row = np.concatenate([left, gap, crop, gap, raw], axis=1)
    strip = np.full((CAPTION_HEIGHT, row.shape[1], 3), 255, np.uint8)
    text = f"{caption}  p(fake)={score:.3f} ({'fake' if fake else 'real'})"
    cv2.putText(strip, text, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, row], axis=0)


def read_frames_at(path: str, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Decodes the frames of `path` at `indices` (in decode order), one at a time.

    Frames are counted as they decode, as the face stage counts them, so the indices
    of `Detector.score_video` name the same frames. Frames past the end are missing.

    Yields:
      (index, BGR uint8 frame [H, W, 3]).
    """
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        return
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    try:
        index, k = 0, 0
        while k < len(wanted) and capture.grab():
            if index == wanted[k]:
                ok, frame = capture.retrieve()
                if ok:
                    yield index, frame
                k += 1
            index += 1
    finally:
        capture.release()


class OverlayVideo:
    """Writes the overlay video atomically: `.mp4` (mp4v), else `.avi` (Motion-JPEG).

    Usage: `with OverlayVideo(stem_path) as video: video.write(frame)`; `video.path`
    is the file written (None where neither container could be opened).
    """

    _CODECS = ((".mp4", "mp4v"), (".avi", "MJPG"))

    def __init__(self, stem_path: str, fps: float = OVERLAY_FPS):
        self._stem = stem_path
        self._fps = fps
        self._writer: cv2.VideoWriter | None = None
        self._tmp = ""
        self.path: str | None = None
        self._frame_size: tuple[int, int] | None = None

    def __enter__(self) -> OverlayVideo:
        return self

    def _open(self, width: int, height: int) -> None:
        os.makedirs(os.path.dirname(self._stem), exist_ok=True)
        for ext, codec in self._CODECS:
            tmp = f"{self._stem}.tmp{ext}"  # the writer picks the container by extension
            writer = cv2.VideoWriter(
                tmp, cv2.VideoWriter_fourcc(*codec), self._fps, (width, height)
            )
            if writer.isOpened():
                self._writer, self._tmp, self.path = writer, tmp, self._stem + ext
                return
            writer.release()
            if os.path.exists(tmp):
                os.remove(tmp)
        logging.warning("Cannot write a video (.mp4 or .avi) with OpenCV: no overlay video.")

    def write(self, frame_bgr: np.ndarray) -> None:
        """Appends one frame; frames of another size are resized to the first's."""
        height, width = frame_bgr.shape[:2]
        if self._frame_size is None:
            # Even sides: many encoders refuse odd ones.
            self._frame_size = (width - width % 2, height - height % 2)
            self._open(*self._frame_size)
        if self._writer is not None:
            if (width, height) != self._frame_size:
                frame_bgr = cv2.resize(frame_bgr, self._frame_size, interpolation=cv2.INTER_AREA)
            self._writer.write(np.ascontiguousarray(frame_bgr))

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._writer is None:
            return
        self._writer.release()
        if exc_type is None and os.path.exists(self._tmp):
            os.replace(self._tmp, self.path)
        else:
            self.path = None
            if os.path.exists(self._tmp):
                os.remove(self._tmp)


def write_png(path: str, image_bgr: np.ndarray) -> None:
    """Writes a PNG atomically (the temporary name keeps the extension OpenCV needs)."""
    with files.atomic_path(path, tmp=path[: -len(".png")] + ".tmp.png") as tmp:
        if not cv2.imwrite(tmp, image_bgr):
            raise OSError(f"OpenCV could not write {tmp}")


def score_plot(frames: np.ndarray, scores: np.ndarray, threshold: float, title: str) -> bytes:
    """PNG bytes: the fake probability of each scored frame over the frame index."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 2.4), dpi=100)
    try:
        ax.plot(frames, scores, marker="o", markersize=3, lw=1.2, color="tab:blue", label="frame")
        ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:.2f}")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("frame")
        ax.set_ylabel("p(fake)")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(fig)


@dataclasses.dataclass
class _Sink:
    """The rows of frames.csv gathered over inputs (a few numbers per frame)."""

    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def _frame_entries(scored: ScoredFaces) -> list[dict[str, Any]]:
    return [
        {"frame": int(f), "score": float(s), "box": [int(v) for v in b]}
        for f, s, b in zip(scored.frames, scored.scores, scored.boxes, strict=True)
    ]


def _images_of(item: InputFile, scored: ScoredFaces) -> Iterator[tuple[int, np.ndarray]]:
    """The full frames behind the scored crops, one at a time."""
    if item.kind == "image":
        image = cv2.imread(item.path, cv2.IMREAD_COLOR)
        if image is not None:
            yield int(scored.frames[0]), image
        return
    yield from read_frames_at(item.path, scored.frames)


def _draw_input(
    out_dir: str, key: str, item: InputFile, scored: ScoredFaces, threshold: float
) -> dict[str, str | None]:
    """Writes the PNGs (and for a video the overlay video and plot) of one input."""
    lo, hi = map_range(scored.maps)
    rows = {int(f): i for i, f in enumerate(scored.frames)}
    frames_dir = os.path.join(FRAMES_DIR, key)
    video_rel = None
    stem = os.path.join(out_dir, VIDEOS_DIR, key)
    with OverlayVideo(stem) if item.kind == "video" else _NoVideo() as video:
        for frame_index, frame in _images_of(item, scored):
            i = rows[frame_index]
            caption = f"{os.path.basename(item.path)} frame {frame_index}"
            args = (scored.boxes[i], scored.crops[i], scored.maps[i], lo, hi)
            figure = panels(frame, *args, float(scored.scores[i]), threshold, caption)
            write_png(os.path.join(out_dir, frames_dir, f"{frame_index}.png"), figure)
            del figure
            video.write(overlay(frame, args[0], args[2], lo, hi, scored.scores[i] >= threshold))
    if video.path:
        video_rel = os.path.relpath(video.path, out_dir)
    plot_rel = None
    if item.kind == "video":
        plot_rel = os.path.join(PLOTS_DIR, key + ".png")
        png = score_plot(scored.frames, scored.scores, threshold, os.path.basename(item.path))
        with files.atomic_path(os.path.join(out_dir, plot_rel)) as tmp, open(tmp, "wb") as f:
            f.write(png)
    return {
        "frames_dir": frames_dir,
        "video": video_rel,
        "plot": plot_rel,
        "map_range": [lo, hi],
    }


class _NoVideo:
    path = None

    def __enter__(self) -> _NoVideo:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def write(self, frame_bgr: np.ndarray) -> None:
        del frame_bgr


def score_input(
    detector: Detector, item: InputFile, frames_per_video: int
) -> tuple[ScoredFaces | None, str | None]:
    """(scored faces, None), or (None, the error) where the input cannot be scored."""
    from data_prep.frames import VideoReadError

    if item.kind is None:
        ext = os.path.splitext(item.path)[1] or "none"
        return None, f"not a video or image (extension {ext})"
    try:
        if item.kind == "video":
            return detector.score_video(item.path, frames_per_video=frames_per_video), None
        return detector.score_image_file(item.path), None
    except (ValueError, VideoReadError, OSError) as err:  # NoFaceError, ImageReadError, ...
        return None, str(err) or type(err).__name__


def run(
    detector: Detector,
    inputs: ExpandedInputs,
    out_dir: str,
    frames_per_video: int = 32,
    progress: bool = True,
) -> dict[str, Any]:
    """Scores every input and writes the report; returns the report (report.json).

    A failed input (unreadable, no face, not media) is logged, recorded with its
    error (score and verdict None) and the others are still scored.
    """
    from tqdm import tqdm

    threshold = float(detector.threshold)
    entries: list[dict[str, Any]] = []
    sink = _Sink()
    keys = input_keys(inputs.files)
    bar = tqdm(
        zip(inputs.files, keys, strict=True),
        total=len(keys),
        disable=not progress,
        desc="detect",
        unit="input",
    )
    for item, key in bar:
        entry: dict[str, Any] = {"path": item.path, "kind": item.kind, "key": key}
        scored, error = score_input(detector, item, frames_per_video)
        if scored is None:
            entry.update(score=None, low=None, high=None, verdict=None, frames=[], error=error)
            logging.warning("%s (%s): failed: %s", item.path, item.kind or "?", error)
        else:
            verdict = detector.verdict(scored.scores)
            entry.update(
                score=float(verdict.score),
                low=float(verdict.low),
                high=float(verdict.high),
                verdict="fake" if verdict.fake else "real",
                frames=_frame_entries(scored),
                error=None,
            )
            entry.update(_draw_input(out_dir, key, item, scored, threshold))
            for frame in entry["frames"]:
                x0, y0, x1, y1 = frame["box"]
                sink.rows.append(
                    dict(
                        path=item.path,
                        kind=item.kind,
                        frame=frame["frame"],
                        score=frame["score"],
                        x0=x0,
                        y0=y0,
                        x1=x1,
                        y1=y1,
                    )
                )
            logging.info(
                "%s (%s): %d frames, score %.3f [%.3f, %.3f], %s",
                item.path,
                item.kind,
                len(entry["frames"]),
                entry["score"],
                entry["low"],
                entry["high"],
                entry["verdict"],
            )
            del scored
        entries.append(entry)
    failed = sum(e["error"] is not None for e in entries)
    report = {
        "model": {"path": detector.model_dir, "manifest": model_summary(detector.manifest)},
        "threshold": threshold,
        "frames_per_video": frames_per_video,
        "heatmap": {
            "colormap": "OpenCV JET, red = unlikely (low log-likelihood), blue = likely",
            "range": "per input: percentiles {:g}..{:g} of its maps (nats)".format(
                *MAP_PERCENTILES
            ),
        },
        "counts": {
            "inputs": len(entries),
            "scored": len(entries) - failed,
            "failed": failed,
            "skipped": len(inputs.skipped),
        },
        "skipped": inputs.skipped,
        "inputs": entries,
    }
    write_report(out_dir, report, sink.rows)
    return report


def model_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's scalar and short fields (no per-file checksums lists)."""
    summary: dict[str, Any] = {}
    for name, value in (manifest or {}).items():
        scalar = isinstance(value, (str, int, float, bool)) or value is None
        if scalar or (isinstance(value, (list, dict)) and len(str(value)) <= 400):
            summary[name] = value
    return summary


def write_report(out_dir: str, report: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Writes frames.csv, report.json and report.html atomically (in that order)."""
    with (
        files.atomic_path(os.path.join(out_dir, FRAMES_CSV)) as tmp,
        open(tmp, "w", newline="") as f,
    ):
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    files.write_json_atomically(os.path.join(out_dir, REPORT_JSON), report)
    files.write_text_atomically(
        os.path.join(out_dir, REPORT_HTML), html_report.render(report, out_dir)
    )
