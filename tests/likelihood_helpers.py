"""Writes small likelihood-map shards in the layout of the extract_likelihoods stage.

Fake maps carry a block of low likelihood (a manipulated region) whose position
depends on the method, real maps do not; every map also gets its own noise, so each
example can be recognised by its map alone.
"""

from __future__ import annotations

import dataclasses
import glob
import os

import numpy as np
import tensorflow as tf

from classifier import data as data_lib
from classifier import training
from classifier.config import DetectorConfig
from classifier.data import LikelihoodSet
from classifier.training import TrainedDetector
from data_prep import files, likelihood_records
from data_prep.face_records import FaceExample
from data_prep.methods import FFPP_METHODS, ORIGINAL, PAPER_METHODS
from experiments.pipeline.workdir import SHARD_SUFFIX

# Every field of the face-crop schema but the crop itself (video, frame, method, label,
# split, compression, box), as `face_records.FaceExample` defines them.
FACE_METADATA_FIELDS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(FaceExample) if f.name != "image"
)
SPLIT_VIDEOS = {"train": 6, "val": 3, "test": 3}
_SPLIT_OFFSET = {"train": 0, "val": 100, "test": 200}


def fake_map(rng: np.random.Generator, method: str, size: int, signal: float) -> np.ndarray:
    """A [size, size] map in nats: noise around -4, plus a low block for fakes."""
    loglik = -4.0 + rng.normal(0.0, 1.0, (size, size))
    if method != ORIGINAL:
        k = FFPP_METHODS.index(method) if method in FFPP_METHODS else 0
        top = size // 8 + (k * size // 8) % (size // 2)
        loglik[top : top + size // 4, size // 4 : size // 2 + size // 8] -= signal
    return loglik.astype(np.float32)


def write_likelihood_tree(
    root: str,
    sources: tuple[str, ...] = (ORIGINAL, *PAPER_METHODS),
    split_videos: dict[str, int] | None = None,
    frames: int = 3,
    size: int = 64,
    signal: float = 3.0,
    seed: int = 0,
) -> str:
    """Writes `root/<split>/<source>/<video>.tfrecord` shards; returns root."""
    rng = np.random.default_rng(seed)
    for split, n_videos in (split_videos or SPLIT_VIDEOS).items():
        for source in sources:
            for i in range(n_videos):
                target = _SPLIT_OFFSET[split] + i
                video = f"{target:03d}" if source == ORIGINAL else f"{target:03d}_{target + 1:03d}"
                records = []
                for frame in range(frames):
                    loglik = fake_map(rng, source, size, signal)
                    face = FaceExample(
                        image=rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                        video=video,
                        frame=frame * 5,
                        method=source,
                        label=int(source != ORIGINAL),
                        split=split,
                        compression="raw",
                        box=(10, 10, 10 + size, 10 + size),
                    )
                    records.append(
                        likelihood_records.serialize_likelihood(face, loglik, float(loglik.sum()))
                    )
                path = os.path.join(root, split, source, video + SHARD_SUFFIX)
                files.write_shard_atomically(path, records)
    return root


def read_tree(
    root: str, splits: tuple[str, ...] | None = None, sources: tuple[str, ...] | None = None
) -> LikelihoodSet:
    """Every record under `root` (or of the given splits and sources) in (split, source,
    video) order, read shard by shard into memory: the tests' reference for what the
    streamed reader (`classifier.data`) must yield."""
    columns: dict[str, list] = {f.name: [] for f in dataclasses.fields(LikelihoodSet)}
    for split in sorted(os.listdir(root)):
        for source in sorted(os.listdir(os.path.join(root, split))):
            if (splits and split not in splits) or (sources and source not in sources):
                continue
            shards = sorted(glob.glob(os.path.join(root, split, source, "*" + SHARD_SUFFIX)))
            for serialized in tf.data.TFRecordDataset(shards).as_numpy_iterator():
                record = likelihood_records.parse_map_features(serialized)
                columns["maps"].append(
                    likelihood_records.decode_map(record["loglik_map"], record["map_size"]).numpy()
                )
                columns["labels"].append(int(record["label"]))
                columns["methods"].append(record["method"].numpy().decode())
                columns["videos"].append(record["video"].numpy().decode())
                columns["frames"].append(int(record["frame"]))
                columns["splits"].append(record["split"].numpy().decode())
                columns["image_loglik"].append(float(record["image_loglik"]))
    return LikelihoodSet(
        maps=np.stack(columns["maps"]).astype(np.float32),
        labels=np.array(columns["labels"], np.int64),
        methods=np.array(columns["methods"], str),
        videos=np.array(columns["videos"], str),
        frames=np.array(columns["frames"], np.int64),
        splits=np.array(columns["splits"], str),
        image_loglik=np.array(columns["image_loglik"], np.float32),
    )


def train_on_tree(
    root: str, sources: tuple[str, ...], config: DetectorConfig, val_split: str = "val"
) -> TrainedDetector:
    """The detection stage's training on a tree: scan, stream, `train_streamed` (the
    train split of `sources` to train on, `val_split` of them to select on)."""
    scans = data_lib.scan_folders(root, sources=sources)

    def scan_of(split: str) -> data_lib.MapScan:
        return data_lib.combine_scans(s for (sp, _), s in scans.items() if sp == split)

    return training.train_streamed(
        data_lib.stream_maps(root, "train", sources, shuffle_seed=config.seed),
        data_lib.stream_maps(root, val_split, sources),
        scan_of("train"),
        scan_of(val_split),
        config,
    )


def quarter_mask(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """A uint8 [size, size] mask (255 inside) covering a quarter of the crop, shifted at
    random with wrap-around: every pixel equally likely to be in it, so the masks of other
    frames say nothing about where this one is."""
    mask = np.zeros((size, size), np.uint8)
    mask[: size // 2, : size // 2] = 255
    return np.roll(mask, tuple(rng.integers(0, size, 2)), axis=(0, 1))


def write_masked_shard(root: str, split: str, source: str, video: str, maps, masks) -> None:
    """One likelihood shard `root/split/source/video.tfrecord`: frame i has the float32
    [S, S] map maps[i] and the mask masks[i] (uint8 [S, S] or None: no mask)."""
    records = []
    for frame, (loglik, mask) in enumerate(zip(maps, masks, strict=True)):
        size = loglik.shape[0]
        face = FaceExample(
            image=np.full((size, size, 3), 128, np.uint8),
            video=video,
            frame=frame,
            method=source,
            label=int(source != ORIGINAL),
            split=split,
            compression="raw",
            box=(0, 0, size, size),
            mask=mask,
        )
        records.append(likelihood_records.serialize_likelihood(face, loglik, float(np.sum(loglik))))
    files.write_shard_atomically(os.path.join(root, split, source, video + SHARD_SUFFIX), records)
