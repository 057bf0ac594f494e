"""The likelihood maps the localisation reads, and its per-pixel anomaly scores.

Reads the `likelihoods/` shards (`data_prep.likelihood_records`) with the masks the
face stage cropped (`data_prep.face_records`), in batches and in shard order, optionally
paired record by record with a background model's maps of the same crops; the mean
pristine map of the train split's originals; and turns maps into the scores of
`localisation` (`score_maps`; higher = more anomalous).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import tensorflow as tf
from absl import logging

from classifier import data as data_lib
from data_prep import face_records, likelihood_records
from data_prep.files import read_json
from data_prep.methods import ORIGINAL
from experiments.pipeline.workdir import CONFIG_FILE, SHARD_SUFFIX, Workdir

SCORES: tuple[str, ...] = ("neg_loglik", "pristine_diff", "likelihood_ratio")
BATCH = 64  # maps per batch: [64, 4096] pixel scores and a [64, 4097] IoU curve

_READ_FIELDS = ("loglik_map", "map_size", "video", "frame", "mask")


def _decoder(map_size: int):
    def decode(parsed: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        parsed = dict(parsed)
        loglik = likelihood_records.decode_map(parsed.pop("loglik_map"), parsed.pop("map_size"))
        parsed["loglik_map"] = tf.ensure_shape(loglik, [map_size, map_size])
        parsed["has_mask"], parsed["mask"] = face_records.decode_mask(parsed.pop("mask"), map_size)
        return parsed

    return decode


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
    decode = _decoder(map_size)
    dataset = likelihood_records.read_records(shards, _READ_FIELDS).map(decode)
    if background_dir is not None:
        mirrored = [
            os.path.join(background_dir, os.path.relpath(p, likelihoods_dir)) for p in shards
        ]
        background = likelihood_records.read_records(mirrored, _READ_FIELDS).map(decode)
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


def face_image(likelihoods_dir: str, method: str, video: str, frame: int) -> np.ndarray | None:
    """The face crop uint8 [S, S, 3] of one test frame (None: not in its shard)."""
    path = os.path.join(likelihoods_dir, "test", method, video + SHARD_SUFFIX)
    for record in likelihood_records.read_examples(path):
        if record.face.frame == frame:
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
