"""Speed and agreement of the fast face detector against the FF++ reference.

Runs the face-crop stage (`face_stage.prepare_faces`) twice on the same real
videos, once with `exact` detection (dlib on every full-resolution frame, as the
FaceForensics++ code does; Roessler et al., ICCV 2019) and once with `fast`, and
reports frames per second per core from the manifests (`frames_read` / `seconds` of
each video, so process start-up is not counted) and the IoU between the crop boxes
of the two runs on the frames both cropped.

Each video is linked into a temporary FF++ layout as an original, with a split file
listing it in `train`, and run fast, exact and fast again, so that both detectors
see the same load on a shared machine.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from data_prep.datasets import FFPPDataset
from data_prep.datasets.ffpp import videos_dir
from data_prep.face_detection import box_iou
from data_prep.face_settings import FaceSettings
from data_prep.face_stage import SHARD_SUFFIX, prepare_faces
from data_prep.files import write_json_atomically
from data_prep.methods import ORIGINAL, SPLITS


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_layout(videos: Sequence[str], root: str) -> tuple[str, str]:
    """Links `videos` into `root` as FF++ originals 000, 001, ...; returns (root, splits).

    Every video goes to the train split (pairs of consecutive ids; an odd last one is
    paired with an id that has no video).
    """
    folder = videos_dir(root, ORIGINAL, "raw")
    os.makedirs(folder, exist_ok=True)
    ids = []
    for i, path in enumerate(videos):
        ext = os.path.splitext(path)[1]
        os.symlink(os.path.abspath(path), os.path.join(folder, f"{i:03d}{ext}"))
        ids.append(f"{i:03d}")
    if len(ids) % 2:
        ids.append(f"{len(ids):03d}")
    splits = os.path.join(root, "splits")
    pairs = {split: [] for split in SPLITS}
    pairs["train"] = [[ids[i], ids[i + 1]] for i in range(0, len(ids), 2)]
    for split, listed in pairs.items():
        write_json_atomically(os.path.join(splits, f"{split}.json"), listed)
    return root, splits


def _boxes(faces_dir: str) -> dict[tuple[str, int], tuple[int, int, int, int]]:
    """(video, frame) -> crop box of every example under a faces folder."""
    # Imported here: worker processes import this module and start without TensorFlow.
    import tensorflow as tf

    from data_prep.face_records import parse_face_numpy

    boxes = {}
    for root, _, files in os.walk(faces_dir):
        for name in sorted(files):
            if name.endswith(SHARD_SUFFIX):
                for raw in tf.data.TFRecordDataset(os.path.join(root, name)).as_numpy_iterator():
                    e = parse_face_numpy(raw)
                    boxes[(e.video, e.frame)] = e.box
    return boxes


def _speed(entries: Sequence[dict[str, Any]]) -> dict[str, float]:
    frames = sum(e["frames_read"] for e in entries)
    seconds = sum(e["seconds"] for e in entries)
    return {
        "frames": frames,
        "seconds": round(seconds, 2),
        "fps_per_core": round(frames / seconds, 2) if seconds else 0.0,
    }


def benchmark_faces(
    videos: Sequence[str],
    settings: FaceSettings | None = None,
    workdir: str | None = None,
    max_frames: int = 0,
    exact_max_frames: int = 0,
) -> dict[str, Any]:
    """Times `fast` against `exact` face cropping on every frame of `videos`.

    Each video is run fast, exact, then fast again (one worker), so that both
    detectors see the same load on a shared machine; the fast time of a video is the
    mean of its two runs. Speeds are sum(frames_read) / sum(seconds) from the
    manifests: per core, since a worker is single-threaded.

    Args:
      videos: paths of real videos.
      settings: the crop and fast-detector settings (FaceSettings() if None); every
        frame is read, at the raw level, originals only, in both detection modes.
      workdir: where the layouts and the runs go (a temporary folder if None).
      max_frames: if > 0, only the first max_frames frames of each video (all runs).
      exact_max_frames: if > 0, the exact run stops after this many frames of each
        video (its speed is measured on those; IoU on the frames both runs cropped).

    Returns:
      `fast` and `exact` ({frames, seconds, fps_per_core}), `speedup`, `mean_iou`,
      `min_iou`, `iou_at_least_0_9` (fraction of frames), `matched_frames`, per-video
      figures (`videos`), the settings and the machine with its load average.
    """
    if not videos:
        raise ValueError("No videos to benchmark: pass --videos_dir with real videos.")
    base = dataclasses.replace(
        settings or FaceSettings(), compression="raw", methods=(), frames_per_video=0
    )
    own_tmp = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="bench_faces_")
    load_start = os.getloadavg()
    exact_cap = exact_max_frames or max_frames
    if max_frames and exact_cap:
        exact_cap = min(exact_cap, max_frames)
    fast_entries, exact_entries, ious, per_video, fast_settings = [], [], [], [], None
    for i, path in enumerate(videos):
        root, splits = build_layout([path], os.path.join(workdir, f"video{i}", "ffpp"))
        runs = {}
        for run, mode, cap in (
            ("fast", "fast", max_frames),
            ("exact", "exact", exact_cap),
            ("fast_again", "fast", max_frames),
        ):
            out = os.path.join(workdir, f"video{i}", run)
            manifest = prepare_faces(
                FFPPDataset(root, splits),
                out,
                dataclasses.replace(base, face_finder=mode, max_frames=cap),
                workers=1,
            )
            runs[run] = (manifest["videos"][0], _boxes(out))
            fast_settings = fast_settings or manifest["settings"]["fast"]
        (fast, fast_boxes), (exact, exact_boxes) = runs["fast"], runs["exact"]
        fast = dict(fast, seconds=(fast["seconds"] + runs["fast_again"][0]["seconds"]) / 2)
        fast_entries.append(fast)
        exact_entries.append(exact)
        matched = sorted(set(fast_boxes) & set(exact_boxes))
        video_ious = [box_iou(fast_boxes[k], exact_boxes[k]) for k in matched]
        ious.extend(video_ious)
        capture = cv2.VideoCapture(path)
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        capture.release()
        per_video.append(
            {
                "video": os.path.basename(path),
                "width": width,
                "height": height,
                "fast": _speed([fast]),
                "exact": _speed([exact]),
                "mean_iou": round(float(np.mean(video_ious)), 4) if video_ious else None,
            }
        )
    ious = np.array(ious)
    fast, exact = _speed(fast_entries), _speed(exact_entries)
    result = {
        "fast": fast,
        "exact": exact,
        "speedup": round(fast["fps_per_core"] / exact["fps_per_core"], 1)
        if exact["fps_per_core"]
        else None,
        "mean_iou": round(float(ious.mean()), 4) if len(ious) else None,
        "min_iou": round(float(ious.min()), 4) if len(ious) else None,
        "iou_at_least_0_9": round(float(np.mean(ious >= 0.9)), 4) if len(ious) else None,
        "matched_frames": len(ious),
        "fast_settings": fast_settings,
        "max_frames": max_frames,
        "exact_max_frames": exact_cap,
        "videos": per_video,
        "machine": {
            "cpu": _cpu_name(),
            "cores": os.cpu_count(),
            "opencv": cv2.__version__,
            "load_average_start": [round(v, 2) for v in load_start],
            "load_average_end": [round(v, 2) for v in os.getloadavg()],
        },
    }
    if own_tmp:
        shutil.rmtree(workdir, ignore_errors=True)
    return result
