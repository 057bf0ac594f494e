"""Cross-dataset and cross-compression evaluation of an exported model folder.

A model folder (`model_folder`, written by `export_model`) is evaluated, never
trained, on one split of any dataset the adapters know (`data_prep.datasets`: FF++
at raw, c23 or c40, the generated miniature at raw or its c23 / c40 stand-ins,
Celeb-DF v2, DFDC, a folder or CSV of real and fake files):

    OUT/
      faces/            face crops of the chosen split (`face_stage.prepare_faces` with
                        the model's saved face settings: detection mode, crop scale and
                        size; resumes per video)
      predictions.csv   split, method, video, frame, label, score for every crop
      metrics.json      written last: the metrics of `run_detection` (frame accuracy,
                        AUC, EER, video accuracy and AUC with 95% bootstrap intervals
                        over videos), overall and per manipulation method (reals + that
                        method's fakes), what was evaluated, and the model's manifest

Leakage: the evaluation only scores. The model folder is verified (sha256 of every
file) before and after, and the output folder may not lie inside it, so nothing of
the evaluated dataset reaches the model or the work directory it was trained in
(`OUT` is a folder of its own, by default `WORKDIR/evaluation/<name>/`). metrics.json
records what the model was trained on (its manifest), so a cross-dataset cell can be
told from a within-dataset one.

Memory: the crops are scored shard by shard in batches (`Detector.score_images`);
only the per-frame labels, scores and video keys are kept, for the metrics.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

from classifier import metrics as metrics_lib
from data_prep.datasets import DatasetListing, VideoDataset, open_dataset
from data_prep.face_stage import prepare_faces
from data_prep.files import atomic_path, check_writable, write_json_atomically
from data_prep.methods import ORIGINAL, SPLITS, order_methods
from experiments.pipeline import model_folder
from experiments.pipeline.detection import METRICS_FILE, PREDICTION_COLUMNS, PREDICTIONS_FILE
from experiments.pipeline.detector import Detector
from experiments.pipeline.workdir import FACES, SHARD_SUFFIX

BATCH_SIZE = 64  # crops per scoring batch
BOOTSTRAP_SAMPLES = 1000
ALL_FAKES = "all"  # the per-method key of the whole set (reals + every fake)


class EvaluationError(ValueError):
    """An evaluation that cannot run: bad dataset, split, output folder or model."""


class SplitOnly:
    """An adapter wrapper listing only the videos of one split (the others are dropped,
    not faced: an evaluation crops and scores nothing else)."""

    def __init__(self, dataset: VideoDataset, split: str):
        self.dataset = dataset
        self.split = split
        self.name = dataset.name
        self.root = dataset.root
        self.splits_dir = dataset.splits_dir
        self.listing: DatasetListing | None = None

    def list_videos(self, compression: str, methods: Sequence[str] | None) -> DatasetListing:
        listing = self.dataset.list_videos(compression, methods)
        kept = [v for v in listing.videos if v.split == self.split]
        if not kept:
            found = sorted({str(v.split) for v in listing.videos})
            raise EvaluationError(
                f"{self.root!r} ({self.name}) has no videos in split {self.split!r} "
                f"(splits found: {', '.join(found) or 'none'}; {len(listing.videos)} videos): "
                "choose another --split, or check --root and --compression."
            )
        self.listing = dataclasses.replace(listing, videos=kept)
        return self.listing


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder + os.sep)


def _shards(faces_dir: str, split: str) -> list[str]:
    return sorted(glob.glob(os.path.join(faces_dir, split, "*", "*" + SHARD_SUFFIX)))


def _face_batches(shards: Sequence[str], batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Crops of the shards in batches: image uint8 [B, S, S, 3], method, video str [B],
    frame, label int [B]. One batch and one shard record at a time in memory."""
    # TensorFlow (under face_records) only once the inputs are checked.
    from data_prep import face_records  # noqa: PLC0415

    columns: dict[str, list] = {k: [] for k in ("image", "method", "video", "frame", "label")}

    def flush() -> dict[str, np.ndarray]:
        batch = {k: np.asarray(v) for k, v in columns.items()}
        for v in columns.values():
            v.clear()
        return batch

    for shard in shards:
        for face in face_records.read_examples(shard):
            for key in columns:
                columns[key].append(getattr(face, key))
            if len(columns["image"]) == batch_size:
                yield flush()
    if columns["image"]:
        yield flush()


def _metrics(
    labels: np.ndarray, scores: np.ndarray, keys: np.ndarray, samples: int, seed: int
) -> dict[str, Any]:
    """`classifier.metrics.evaluate` (the report of run_detection's metrics.json)."""
    report, _ = metrics_lib.evaluate(labels, scores, keys, num_samples=samples, seed=seed)
    if len(set(labels.tolist())) < 2:  # accuracy still means something
        report["note"] = "one class only: AUC and EER undefined (NaN)"
    return report


def model_summary(detector: Detector) -> dict[str, Any]:
    """What the model was trained on and where it came from (its manifest)."""
    manifest = detector.manifest
    return {
        "model_dir": detector.model_dir,
        "project_version": manifest.get("project_version"),
        "format_version": manifest.get("format_version"),
        "trained_on": manifest.get("trained_on"),
        "test_metrics_at_export": {
            k: (manifest.get("metrics", {}).get("test") or {}).get(k)
            for k in ("frame_accuracy", "frame_auc", "video_auc")
        },
        "threshold": detector.threshold,
        "files": manifest.get("files"),
    }


def evaluate_model(
    model_dir: str,
    dataset: str,
    root: str,
    out_dir: str,
    splits_dir: str | None = None,
    compression: str = "raw",
    split: str = "test",
    workers: int = 1,
    frames_per_video: int | None = None,
    batch_size: int = BATCH_SIZE,
    bootstrap_samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    detector: Detector | None = None,
) -> dict[str, Any]:
    """Crops, scores and measures one split of a dataset with a model folder.

    Args:
      model_dir: a folder written by `export_model`.
      dataset: a name of `data_prep.datasets.ADAPTERS`; root: its folder (a CSV file
        for `folder`); splits_dir: FF++'s official split folder (FF++ only).
      out_dir: the evaluation's folder (faces/, predictions.csv, metrics.json); not
        inside model_dir.
      compression: FF++ or generated level (raw, c23, c40); recorded as given by the
        others.
      split: the split scored (datasets without an official split put their files in
        `test`: their `split_policy`, recorded).
      workers: face-crop processes; frames_per_video: None keeps the model's saved
        sampling, N > 0 takes N evenly spaced frames per video (0: every frame).
      batch_size: crops per scoring batch; bootstrap_samples, seed: the intervals.
      detector: `Detector.load(model_dir)` already done (`evaluate_levels`); None
        loads it here.

    Returns:
      The metrics.json written: {"metrics": overall report (`classifier.metrics.
      evaluate`), "per_method": {method: report of reals + that method's fakes},
      "evaluated": {...}, "model": model_summary, "leakage": {...}}.

    Raises:
      EvaluationError (a ValueError): unknown dataset or split, no videos in the split,
        no faces found, out_dir inside the model folder, the model changed while
        evaluating. model_folder.ModelFolderError (a ValueError): the model folder does
        not load. FileNotFoundError: no dataset root. PermissionError: out_dir.
    """
    if split not in SPLITS:
        raise EvaluationError(f"Unknown split {split!r}: choose one of {', '.join(SPLITS)}.")
    if frames_per_video is not None and frames_per_video < 0:
        raise EvaluationError(f"frames_per_video must be >= 0, got {frames_per_video}.")
    if detector is None:
        detector = Detector.load(model_dir)  # verifies every file's sha256
    if _inside(out_dir, model_dir):
        raise EvaluationError(
            f"The output folder {out_dir!r} lies inside the model folder {model_dir!r}: "
            "nothing of an evaluated dataset may be written there; choose another --out."
        )
    try:
        adapter = SplitOnly(open_dataset(dataset, root, splits_dir=splits_dir), split)
    except ValueError as err:
        raise EvaluationError(str(err)) from None
    check_writable(out_dir, "--out")
    settings = dataclasses.replace(detector.face_settings, compression=compression, methods=None)
    if frames_per_video is not None:
        settings = dataclasses.replace(settings, frames_per_video=frames_per_video)
    faces_dir = os.path.join(out_dir, FACES)
    faces_manifest = prepare_faces(adapter, faces_dir, settings, workers=workers)
    listing = adapter.listing
    shards = _shards(faces_dir, split)
    if not shards:
        raise EvaluationError(
            f"No face crops in {faces_dir!r}: no face was found in the {split} videos of "
            f"{root!r} (see {os.path.join(faces_dir, 'manifest.json')})."
        )

    labels, scores, keys = [], [], []
    with atomic_path(os.path.join(out_dir, PREDICTIONS_FILE)) as tmp, open(tmp, "w") as f:
        f.write(",".join(PREDICTION_COLUMNS) + "\n")
        for batch in _face_batches(shards, batch_size):
            batch_scores = detector.score_images(batch["image"]).scores.astype(np.float64)
            for i, score in enumerate(batch_scores):
                f.write(
                    f"{split},{batch['method'][i]},{batch['video'][i]},{int(batch['frame'][i])},"
                    f"{int(batch['label'][i])},{score:.6f}\n"
                )
            labels.append(batch["label"].astype(np.int64))
            scores.append(batch_scores)
            keys.append(np.char.add(np.char.add(batch["method"].astype(str), "/"), batch["video"]))
    labels_a, scores_a, keys_a = (
        np.concatenate(labels),
        np.concatenate(scores),
        np.concatenate(keys),
    )
    methods_a = np.asarray([k.split("/", 1)[0] for k in keys_a])

    overall = _metrics(labels_a, scores_a, keys_a, bootstrap_samples, seed)
    per_method = {}
    fakes = order_methods(m for m in set(methods_a.tolist()) if m != ORIGINAL)
    for method in fakes:
        chosen = (methods_a == ORIGINAL) | (methods_a == method)
        per_method[method] = _metrics(
            labels_a[chosen], scores_a[chosen], keys_a[chosen], bootstrap_samples, seed
        )

    # The model is untouched: every file as exported (sha256 against the manifest).
    after = model_folder.verify(model_dir)
    if after.get("files") != detector.manifest.get("files"):
        raise EvaluationError(f"The model folder {model_dir!r} changed during the evaluation.")
    trained_on = detector.manifest.get("trained_on") or {}
    same = trained_on.get("dataset") == dataset
    if same and split != "test":
        logging.warning(
            "%s is the model's training dataset and its %s split was seen in training or "
            "selection: these numbers are not a held-out evaluation.",
            dataset,
            split,
        )
    report = {
        "metrics": overall,
        "per_method": per_method,
        "evaluated": {
            "dataset": dataset,
            "root": root,
            "splits_dir": splits_dir,
            "split": split,
            "compression": compression,
            "split_policy": listing.split_policy
            or "the dataset's official split files (FF++ layout)",
            "methods": list(fakes),
            "videos_listed": listing.counts(),
            "frames_scored": {
                source: int(np.sum(methods_a == source)) for source in (ORIGINAL, *fakes)
            },
            "videos_failed": faces_manifest.get("failed_videos"),
            "problems": len(listing.problems),
            "face_settings": settings.to_json(),
        },
        "model": model_summary(detector),
        "leakage": {
            "training_data": {
                k: trained_on.get(k) for k in ("dataset", "compression", "protocol", "method")
            },
            "same_dataset_as_training": same,
            # The model was trained on train and selected on val of its own dataset.
            "split_seen_in_training": same and split != "test",
            "scored_only": "the model is only scored: no training, no selection, no "
            "threshold tuning on the evaluated data",
            "model_files_unchanged": True,
            "writes": "only under the evaluation folder",
        },
    }
    write_json_atomically(os.path.join(out_dir, METRICS_FILE), report)
    return report


def evaluate_levels(
    model_dir: str, dataset: str, root: str, out_dirs: Mapping[str, str], **options: Any
) -> dict[str, dict[str, Any]]:
    """`evaluate_model` of one split at several compression levels, loading the model
    (and tracing its scoring) once: cross-compression at the cost of one start.

    Args:
      out_dirs: {level ("raw", "c23", "c40"): its evaluation folder}, distinct folders.
      options: the other arguments of `evaluate_model` (not `compression`).

    Returns:
      {level: the metrics.json written for it}.

    Raises:
      EvaluationError: no level, or two levels sharing a folder; and what
        `evaluate_model` raises.
    """
    if not out_dirs:
        raise EvaluationError("No compression level to evaluate.")
    folders = [os.path.normpath(d) for d in out_dirs.values()]
    if len(set(folders)) != len(folders):
        raise EvaluationError(
            f"Each compression level needs its own output folder, got {dict(out_dirs)}."
        )
    detector = Detector.load(model_dir)
    return {
        level: evaluate_model(
            model_dir, dataset, root, out_dir, compression=level, detector=detector, **options
        )
        for level, out_dir in out_dirs.items()
    }
