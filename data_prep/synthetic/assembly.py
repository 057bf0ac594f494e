"""The generated dataset assembled: identities paired and split, videos written, lossless.

Identities are paired as in FaceForensics++ (each identity is the target of one fake
per method: `a_b` and `b_a` for a pair [a, b]) and the pairs split train/val/test in
FF++ proportions (72/14/14 %), written as official-format split files. Videos are
FFV1 (lossless; the paper works on raw video) in `.avi` or `.mkv`, laid out as FF++
at the `raw` level (`datasets.ffpp`) and at the stand-ins for `c23` and `c40`
(`compression`: every raw frame degraded, then stored losslessly), and every written
video is read back and compared with what was written. Every fake has its
manipulation mask, as FF++ ships them, one for all levels
(`manipulated_sequences/<method>/masks/videos/<target>_<source>.<container>`):
white (255 in all three channels) where the manipulation's own region
(`manipulations.MASKED_MANIPULATIONS`) lies, black elsewhere, FFV1 like the videos.
The files beside the videos are those the generated adapter reads
(`datasets.generated`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from absl import logging
from tqdm import tqdm

from data_prep.datasets.ffpp import COMPRESSIONS, check_compression, masks_dir, videos_dir
from data_prep.datasets.generated import (
    LEVEL_CODECS,
    MARKER,
    RAW,
    SETTINGS,
    SPLITS_DIR,
    marker_levels,
)
from data_prep.files import atomic_path, read_json, write_json_atomically
from data_prep.methods import ORIGINAL, SPLITS
from data_prep.synthetic.compression import degrade_frame
from data_prep.synthetic.manipulations import MANIPULATIONS, MASKED_MANIPULATIONS
from data_prep.synthetic.rendering import make_identity, render_video, seeded_rng

CONTAINERS: tuple[str, ...] = ("avi", "mkv")
SPLIT_FRACTIONS = {"val": 0.14, "test": 0.14}  # FF++: 720 / 140 / 140 of 1000 videos


def pair_identities(identities: int, seed: int) -> dict[str, list[list[str]]]:
    """Random [target, source] pairs of ids ("000", ...) split 72/14/14 % as in FF++.

    Raises:
      ValueError: fewer than 6 identities (3 pairs, one per split) or an odd number.
    """
    if identities < 6 or identities % 2:
        raise ValueError(
            f"identities must be even and at least 6 (one pair per split), got {identities}."
        )
    width = max(3, len(str(identities - 1)))
    ids = [f"{i:0{width}d}" for i in range(identities)]
    order = seeded_rng(seed, 0).permutation(identities)
    pairs = [[ids[order[2 * i]], ids[order[2 * i + 1]]] for i in range(identities // 2)]
    n_val = max(1, round(len(pairs) * SPLIT_FRACTIONS["val"]))
    n_test = max(1, round(len(pairs) * SPLIT_FRACTIONS["test"]))
    n_train = len(pairs) - n_val - n_test
    return {
        "train": pairs[:n_train],
        "val": pairs[n_train : n_train + n_val],
        "test": pairs[n_train + n_val :],
    }


def write_video(
    path: str, frames: list[np.ndarray], fps: float, check_every_frame: bool = True
) -> None:
    """Writes BGR uint8 frames [H, W, 3] losslessly (FFV1) and checks them by reading back.

    Written under a hidden temporary name that keeps the extension (OpenCV picks the
    container from it; the FF++ layout scan skips hidden files), renamed when verified.
    With `check_every_frame=False` only the first frame and the container's frame
    count are checked (decoding is most of the cost: for the compression levels, whose
    codec the raw videos of the same run verify frame by frame).

    Raises:
      RuntimeError: this OpenCV cannot write FFV1, or the read-back differs.
    """
    folder, name = os.path.split(path)
    ext = os.path.splitext(name)[1]
    with atomic_path(path, tmp=os.path.join(folder, f".{name}.partial{ext}")) as tmp:
        height, width = frames[0].shape[:2]
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"FFV1"), fps, (width, height))
        if not writer.isOpened():
            raise RuntimeError(
                f"OpenCV cannot write FFV1 video {tmp}: install opencv-python-headless with "
                "FFmpeg support."
            )
        for frame in frames:
            writer.write(frame)
        writer.release()
        if check_every_frame:
            _check_read_back(tmp, frames)
        else:
            _check_first_frame_and_length(tmp, frames)


def read_video(path: str) -> list[np.ndarray]:
    """Every frame of a video file, BGR uint8 [H, W, 3] each."""
    capture = cv2.VideoCapture(path)
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return frames
            frames.append(frame)
    finally:
        capture.release()


def _check_read_back(path: str, frames: list[np.ndarray]) -> None:
    """Raises RuntimeError unless the video at `path` decodes to exactly `frames`."""
    capture = cv2.VideoCapture(path)
    read = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if read >= len(frames) or not np.array_equal(frame, frames[read]):
                raise RuntimeError(
                    f"Video {path} does not read back as written: FFV1 is not lossless here."
                )
            read += 1
    finally:
        capture.release()
    if read != len(frames):
        raise RuntimeError(f"Video {path} reads back {read} of {len(frames)} frames.")


def _check_first_frame_and_length(path: str, frames: list[np.ndarray]) -> None:
    """Raises RuntimeError unless the video at `path` starts with exactly `frames[0]`
    and its container says it holds `len(frames)` frames."""
    capture = cv2.VideoCapture(path)
    try:
        ok, first = capture.read()
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    if not ok or not np.array_equal(first, frames[0]):
        raise RuntimeError(
            f"Video {path} does not read back as written: FFV1 is not lossless here."
        )
    if count != len(frames):
        raise RuntimeError(f"Video {path} holds {count} of {len(frames)} frames.")


def _mask_frame(region: np.ndarray) -> np.ndarray:
    """A bool [H, W] region as an FF++-style mask frame: BGR uint8 [H, W, 3], 255 inside."""
    return np.repeat(region[..., None].astype(np.uint8) * 255, 3, axis=2)


def check_levels(compressions: Sequence[str]) -> tuple[str, ...]:
    """The requested levels in FF++'s order (raw, c23, c40).

    Raises:
      ValueError: an unknown level, or no `raw` (every other level is made from it).
    """
    for level in compressions:
        check_compression(level)
    if RAW not in compressions:
        raise ValueError(
            f"compressions must include raw (the other levels are made from the raw "
            f"videos), got {','.join(compressions) or 'none'}."
        )
    return tuple(c for c in COMPRESSIONS if c in compressions)


def _check_saved_levels(out_dir: str, saved: dict[str, Any] | None) -> None:
    """Raises ValueError if `saved` (a marker or settings file) records a level made
    with other codec parameters than `LEVEL_CODECS` now has."""
    for level, recorded in ((saved or {}).get("levels") or {}).items():
        codec = LEVEL_CODECS.get(level)
        if codec is None or {k: recorded.get(k) for k in codec} != codec:
            raise ValueError(
                f"{out_dir} holds {level} videos made with other parameters ({recorded}, "
                f"now {codec}): choose another --out or delete it."
            )


class _LevelErrors:
    """Squared error to raw summed over every frame of every video, per level: the
    dataset's PSNR (from the pooled mean squared error)."""

    def __init__(self, levels: Sequence[str]):
        self.sums = {level: 0.0 for level in levels}
        self.counts = {level: 0 for level in levels}

    def add(self, level: str, raw: np.ndarray, degraded: np.ndarray) -> None:
        diff = raw.astype(np.float64) - degraded.astype(np.float64)
        self.sums[level] += float(np.sum(diff * diff))
        self.counts[level] += diff.size

    def psnr_db(self, level: str) -> float | None:
        if not self.counts[level]:
            return None
        mse = self.sums[level] / self.counts[level]
        return float("inf") if mse == 0 else round(float(10 * np.log10(255.0**2 / mse)), 3)


def generate_synthetic_ffpp(
    out_dir: str,
    identities: int = 12,
    frames: int = 24,
    seed: int = 0,
    width: int = 192,
    height: int = 160,
    fps: float = 25.0,
    container: str = "avi",
    methods: tuple[str, ...] = tuple(MANIPULATIONS),
    compressions: Sequence[str] = COMPRESSIONS,
) -> dict[str, Any]:
    """Writes a miniature FF++ (raw, lossless; c23 and c40 stand-ins) with split files.

    Layout: `original_sequences/youtube/<level>/videos/<id>.<container>`,
    `manipulated_sequences/<method>/<level>/videos/<target>_<source>.<container>` for
    each level of `compressions`, one mask per fake for all levels
    `manipulated_sequences/<method>/masks/videos/<target>_<source>.<container>` (BGR,
    255 inside the manipulated region, 0 outside), `splits/{train,val,test}.json`.
    A level other than raw is every raw frame through its codec
    (`datasets.generated.LEVEL_CODECS`), stored losslessly. Generation is
    deterministic; videos already written by an earlier run with the same settings
    are kept, so an interrupted run resumes (a dataset written before masks or levels
    existed gains them, its videos kept), and a dataset already complete at the
    requested levels is returned as it is.

    Args:
      out_dir: output folder (created).
      identities: number of people (even, >= 6); one original video each.
      frames: frames per video (>= 2).
      seed: everything generated is a pure function of the seed.
      width, height: frame size in pixels (>= 96 x 96).
      fps: frame rate written in the container.
      container: "avi" or "mkv" (both FFV1).
      methods: manipulations to write (keys of `manipulations.MANIPULATIONS`).
      compressions: levels to write: "raw" and any of "c23", "c40".

    Returns:
      A summary (also in `out_dir/synthetic.json`): `settings`, `pairs` per split,
      `videos` per source, `splits_dir`, `compressions` (the complete levels) and
      `levels` (each non-raw level's codec and its PSNR to raw in dB over the dataset).

    Raises:
      ValueError: bad sizes, container, method or level, or `out_dir` holds a dataset
        made with other settings or other level parameters.
      RuntimeError: OpenCV cannot write FFV1 losslessly or encode JPEG.
    """
    if frames < 2:
        raise ValueError(f"frames must be at least 2, got {frames}.")
    if width < 96 or height < 96:
        raise ValueError(f"Frames must be at least 96x96 pixels, got {width}x{height}.")
    if container not in CONTAINERS:
        raise ValueError(f"container must be one of {', '.join(CONTAINERS)}, got {container!r}.")
    unknown = [m for m in methods if m not in MANIPULATIONS]
    if unknown:
        raise ValueError(f"Unknown methods {unknown}: use a subset of {', '.join(MANIPULATIONS)}.")
    levels = check_levels(compressions)
    degraded_levels = levels[1:]  # raw is first
    pairs = pair_identities(identities, seed)
    settings = {
        "identities": identities,
        "frames": frames,
        "seed": seed,
        "width": width,
        "height": height,
        "fps": fps,
        "container": container,
    }
    marker = os.path.join(out_dir, MARKER)
    settings_path = os.path.join(out_dir, SETTINGS)
    for path in (marker, settings_path):
        saved = read_json(path)
        if saved is not None and saved.get("settings") != settings:
            raise ValueError(
                f"{out_dir} holds a synthetic dataset made with other settings "
                f"({saved.get('settings')}): choose another --out or delete it."
            )
        _check_saved_levels(out_dir, saved)

    def path_of(method: str, video: str, level: str = RAW) -> str:
        return os.path.join(videos_dir(out_dir, method, level), f"{video}.{container}")

    def mask_of(method: str, video: str) -> str:
        return os.path.join(masks_dir(out_dir, method), f"{video}.{container}")

    all_pairs = [pair for split in SPLITS for pair in pairs[split]]
    fakes = [f"{t}_{s}" for a, b in all_pairs for t, s in ((a, b), (b, a))]

    def expected_at(level: str) -> list[str]:
        return [path_of(ORIGINAL, name, level) for pair in all_pairs for name in pair] + [
            path_of(m, fake, level) for fake in fakes for m in methods
        ]

    masks = [mask_of(m, fake) for fake in fakes for m in methods]
    saved = read_json(marker)
    if (
        saved is not None
        and set(saved.get("videos", {})) == {ORIGINAL, *methods}
        and set(levels) <= set(marker_levels(saved))
        and all(os.path.exists(p) for p in masks)
        and all(os.path.exists(p) for level in levels for p in expected_at(level))
    ):
        logging.info(
            "Synthetic FF++ in %s is already complete: %s videos at %s.",
            out_dir,
            saved["videos"],
            ", ".join(marker_levels(saved)),
        )
        return {**saved, "compressions": marker_levels(saved)}
    # The settings (and the codecs of the levels being made) go first, so a resumed
    # run can tell its own partial output.
    saved_settings = read_json(settings_path) or {}
    codecs = {**(saved_settings.get("levels") or {})}
    codecs.update({level: LEVEL_CODECS[level] for level in degraded_levels})
    write_json_atomically(settings_path, {"settings": settings, "levels": codecs})
    splits_dir = os.path.join(out_dir, SPLITS_DIR)
    for split in SPLITS:
        write_json_atomically(os.path.join(splits_dir, f"{split}.json"), pairs[split])

    errors = _LevelErrors(degraded_levels)

    def write_levels(method: str, video: str, made: list[np.ndarray] | None) -> None:
        """Writes the raw video if missing (from `made`), then each missing level
        from the raw frames as stored, measuring every level against them."""
        raw_path = path_of(method, video)
        if os.path.exists(raw_path):
            # What a reader gets (lossless, so as rendered), read only if needed.
            raw = read_video(raw_path) if degraded_levels else []
        else:
            if made is None:
                raise RuntimeError(f"No frames to write the missing video {raw_path}.")
            write_video(raw_path, made, fps)
            raw = made
        for level in degraded_levels:
            degraded = [degrade_frame(frame, level) for frame in raw]
            for frame, worse in zip(raw, degraded, strict=True):
                errors.add(level, frame, worse)
            if not os.path.exists(path_of(method, video, level)):
                write_video(path_of(method, video, level), degraded, fps, check_every_frame=False)

    counts = {ORIGINAL: 0, **{m: 0 for m in methods}}
    for a, b in tqdm(all_pairs, unit="pair", desc="synthetic"):
        videos = {
            name: render_video(
                make_identity(seed, int(name), width, height), frames, width, height, seed
            )
            for name in (a, b)
        }
        for name, video in videos.items():
            write_levels(ORIGINAL, name, video.frames)
            counts[ORIGINAL] += 1
        for target, source in ((a, b), (b, a)):
            pair_seed = seed * 1_000_003 + int(target) * 1009 + int(source)
            fake = f"{target}_{source}"
            for method in methods:
                made = None
                mask_path = mask_of(method, fake)
                if not (os.path.exists(path_of(method, fake)) and os.path.exists(mask_path)):
                    # A dataset written before masks existed gains them; its videos stay.
                    made = [
                        MASKED_MANIPULATIONS[method](t, videos[target], videos[source], pair_seed)
                        for t in range(frames)
                    ]
                    if not os.path.exists(mask_path):
                        write_video(mask_path, [_mask_frame(region) for _, region in made], fps)
                write_levels(method, fake, None if made is None else [f for f, _ in made])
                counts[method] += 1
    # The levels complete now: those asked for, and those an earlier run completed.
    earlier = marker_levels(saved) if saved is not None else []
    complete = [
        level
        for level in COMPRESSIONS
        if (level in levels or level in earlier)
        and all(os.path.exists(p) for p in expected_at(level))
    ]
    level_info = {
        level: (
            {**LEVEL_CODECS[level], "psnr_db": errors.psnr_db(level)}
            if level in degraded_levels
            else (saved or {}).get("levels", {}).get(level, LEVEL_CODECS[level])
        )
        for level in complete
        if level != RAW
    }
    summary = {
        "settings": settings,
        "pairs": pairs,
        "videos": counts,
        "splits_dir": splits_dir,
        "compressions": complete,
        "levels": level_info,
    }
    write_json_atomically(marker, summary)
    logging.info(
        "Synthetic FF++ in %s: %s videos at %s (PSNR to raw: %s); train/val/test pairs %s.",
        out_dir,
        counts,
        ", ".join(complete),
        ", ".join(f"{k} {v.get('psnr_db')} dB" for k, v in level_info.items()) or "-",
        "/".join(str(len(pairs[s])) for s in SPLITS),
    )
    return summary
