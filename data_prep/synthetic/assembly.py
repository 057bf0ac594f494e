"""The generated dataset assembled: identities paired and split, videos written, lossless.

Identities are paired as in FaceForensics++ (each identity is the target of one fake
per method: `a_b` and `b_a` for a pair [a, b]) and the pairs split train/val/test in
FF++ proportions (72/14/14 %), written as official-format split files. Videos are
FFV1 (lossless; the paper works on raw video) in `.avi` or `.mkv`, laid out as FF++
at the `raw` level (`datasets.ffpp`), and every written video is read back and
compared with what was written. Every fake has its manipulation mask, as FF++ ships
them (`manipulated_sequences/<method>/masks/videos/<target>_<source>.<container>`):
white (255 in all three channels) where the manipulation's own region
(`manipulations.MASKED_MANIPULATIONS`) lies, black elsewhere, FFV1 like the videos.
The files beside the videos are those the generated adapter reads
(`datasets.generated`).
"""

from __future__ import annotations

import os
from typing import Any

import cv2
import numpy as np
from absl import logging
from tqdm import tqdm

from data_prep.datasets.ffpp import masks_dir, videos_dir
from data_prep.datasets.generated import MARKER, SETTINGS, SPLITS_DIR
from data_prep.files import atomic_path, read_json, write_json_atomically
from data_prep.methods import ORIGINAL, SPLITS
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


def write_video(path: str, frames: list[np.ndarray], fps: float) -> None:
    """Writes BGR uint8 frames [H, W, 3] losslessly (FFV1) and checks them by reading back.

    Written under a hidden temporary name that keeps the extension (OpenCV picks the
    container from it; the FF++ layout scan skips hidden files), renamed when verified.

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
        _check_read_back(tmp, frames)


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


def _mask_frame(region: np.ndarray) -> np.ndarray:
    """A bool [H, W] region as an FF++-style mask frame: BGR uint8 [H, W, 3], 255 inside."""
    return np.repeat(region[..., None].astype(np.uint8) * 255, 3, axis=2)


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
) -> dict[str, Any]:
    """Writes a miniature FF++ (raw, lossless) with split files under `out_dir`.

    Layout: `original_sequences/youtube/raw/videos/<id>.<container>`,
    `manipulated_sequences/<method>/raw/videos/<target>_<source>.<container>`,
    its mask `manipulated_sequences/<method>/masks/videos/<target>_<source>.<container>`
    (BGR, 255 inside the manipulated region, 0 outside), `splits/{train,val,test}.json`.
    Generation is deterministic; videos already written by an earlier run with the
    same settings are kept, so an interrupted run resumes (a dataset written before
    masks existed gains its masks, its videos kept), and a dataset already complete
    is returned as it is.

    Args:
      out_dir: output folder (created).
      identities: number of people (even, >= 6); one original video each.
      frames: frames per video (>= 2).
      seed: everything generated is a pure function of the seed.
      width, height: frame size in pixels (>= 96 x 96).
      fps: frame rate written in the container.
      container: "avi" or "mkv" (both FFV1).
      methods: manipulations to write (keys of `manipulations.MANIPULATIONS`).

    Returns:
      A summary (also in `out_dir/synthetic.json`): `settings`, `pairs` per split,
      `videos` per source, `splits_dir`.

    Raises:
      ValueError: bad sizes, container or method, or `out_dir` holds a dataset made
        with other settings.
      RuntimeError: OpenCV cannot write FFV1 losslessly.
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

    def path_of(method: str, video: str) -> str:
        return os.path.join(videos_dir(out_dir, method, "raw"), f"{video}.{container}")

    def mask_of(method: str, video: str) -> str:
        return os.path.join(masks_dir(out_dir, method), f"{video}.{container}")

    all_pairs = [pair for split in SPLITS for pair in pairs[split]]
    expected = [path_of(ORIGINAL, name) for pair in all_pairs for name in pair] + [
        of(m, f"{t}_{s}")
        for a, b in all_pairs
        for t, s in ((a, b), (b, a))
        for m in methods
        for of in (path_of, mask_of)
    ]
    saved = read_json(marker)
    if (
        saved is not None
        and set(saved.get("videos", {})) == {ORIGINAL, *methods}
        and all(os.path.exists(p) for p in expected)
    ):
        logging.info(
            "Synthetic FF++ in %s is already complete: %s videos.", out_dir, saved["videos"]
        )
        return saved
    # The settings go first, so a resumed run can tell its own partial output.
    write_json_atomically(settings_path, {"settings": settings})
    splits_dir = os.path.join(out_dir, SPLITS_DIR)
    for split in SPLITS:
        write_json_atomically(os.path.join(splits_dir, f"{split}.json"), pairs[split])

    counts = {ORIGINAL: 0, **{m: 0 for m in methods}}
    for a, b in tqdm(all_pairs, unit="pair", desc="synthetic"):
        videos = {
            name: render_video(
                make_identity(seed, int(name), width, height), frames, width, height, seed
            )
            for name in (a, b)
        }
        for name, video in videos.items():
            if not os.path.exists(path_of(ORIGINAL, name)):
                write_video(path_of(ORIGINAL, name), video.frames, fps)
            counts[ORIGINAL] += 1
        for target, source in ((a, b), (b, a)):
            pair_seed = seed * 1_000_003 + int(target) * 1009 + int(source)
            for method in methods:
                path = path_of(method, f"{target}_{source}")
                mask_path = mask_of(method, f"{target}_{source}")
                if not (os.path.exists(path) and os.path.exists(mask_path)):
                    # A dataset written before masks existed gains them; its videos stay.
                    made = [
                        MASKED_MANIPULATIONS[method](t, videos[target], videos[source], pair_seed)
                        for t in range(frames)
                    ]
                    if not os.path.exists(path):
                        write_video(path, [fake for fake, _ in made], fps)
                    write_video(mask_path, [_mask_frame(region) for _, region in made], fps)
                counts[method] += 1
    summary = {
        "settings": settings,
        "pairs": pairs,
        "videos": counts,
        "splits_dir": splits_dir,
    }
    write_json_atomically(marker, summary)
    logging.info(
        "Synthetic FF++ in %s: %s videos; train/val/test pairs %s.",
        out_dir,
        counts,
        "/".join(str(len(pairs[s])) for s in SPLITS),
    )
    return summary
