"""Face crops to per-pixel log-likelihood maps under the UBM (the `extract_likelihoods` stage).

Khodabakhsh & Busch (BIOSIG 2020), Sec. 3: the PixelCNN++ universal background
model, trained on pristine faces, gives every pixel of a face its conditional
log-likelihood given the pixels before it; the resulting 64x64 map (nats, RGB joint,
EMA weights, dropout off) is what the detector classifies.

Layout (`experiments.pipeline.workdir`): every face shard
`faces/<split>/<source>/<video>.tfrecord` becomes
`likelihoods/<split>/<source>/<video>.tfrecord` with the same examples in the same
order, each keeping every face feature and gaining `loglik_map` and `image_loglik`
(schema: `data_prep.likelihood_records`). Crops of consecutive videos
share full batches; each output shard is written atomically once its video is done,
so a re-run skips finished videos and redoes at most the batch in flight.
`config.json` (written first) records the UBM's weight fingerprint, so maps from two
different UBMs are never mixed in one folder; `manifest.json` has the counts.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from data_prep import face_records, files, likelihood_records
from data_prep.files import read_json, write_json_atomically
from experiments.configs.base import ExperimentConfig
from experiments.pipeline.workdir import CONFIG_FILE, MANIFEST_FILE, SHARD_SUFFIX, Workdir
from pixelcnn_pp import likelihood

# images uint8 [N, H, W, 3] -> (maps float32 [N, H, W] nats, image log-lik float32 [N])
LikelihoodFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class ShardTask:
    """One face shard and the likelihood shard it becomes."""

    face_shard: str
    output_shard: str
    split: str
    source: str
    video: str


def plan_shards(faces_dir: str, output_dir: str) -> list[ShardTask]:
    """Lists the face shards under `faces_dir` and the likelihood shard of each.

    Raises:
      FileNotFoundError: `faces_dir` is missing or holds no face shards.
    """
    if not os.path.isdir(faces_dir):
        raise FileNotFoundError(
            f"Faces folder {faces_dir!r} does not exist: run prepare_faces first, or point "
            "--faces_dir at the `faces` folder it wrote."
        )
    pattern = os.path.join(faces_dir, "*", "*", "*" + SHARD_SUFFIX)
    try:
        shards = files.list_shards(pattern)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"Faces folder {faces_dir!r} holds no face shards (<split>/<source>/<video>"
            f"{SHARD_SUFFIX}): run prepare_faces first, or check --faces_dir."
        ) from e
    tasks = []
    for shard in shards:
        rel = os.path.relpath(shard, faces_dir)
        split, source, name = rel.split(os.sep)
        tasks.append(
            ShardTask(
                face_shard=shard,
                output_shard=os.path.join(output_dir, rel),
                split=split,
                source=source,
                video=name[: -len(SHARD_SUFFIX)],
            )
        )
    return tasks


def read_faces(path: str) -> list[face_records.FaceExample]:
    """All face examples of one shard, in order."""
    return [
        face_records.parse_face_numpy(record.numpy()) for record in tf.data.TFRecordDataset(path)
    ]


def model_fingerprint(weights: list[np.ndarray]) -> str:
    """A short hash of a model's weights: equal weights, equal fingerprint."""
    digest = hashlib.sha256()
    for w in weights:
        w = np.ascontiguousarray(w)
        digest.update(str(w.shape).encode())
        digest.update(w.tobytes())
    return digest.hexdigest()[:16]


def _check_outputs(images: np.ndarray, maps: np.ndarray, lls: np.ndarray) -> None:
    n, height, width = images.shape[:3]
    if maps.shape != (n, height, width) or lls.shape != (n,):
        raise ValueError(
            f"The UBM returned maps {list(maps.shape)} and log-likelihoods {list(lls.shape)} "
            f"for {n} crops of {height}x{width}: expected [{n}, {height}, {width}] and [{n}]."
        )


class _Batcher:
    """Feeds crops of consecutive videos to the UBM in full batches, writes finished videos.

    Crops wait in a queue until `batch_size` of them are there, so no batch is padded
    except the very last one; a video's shard is written as soon as all its crops have
    their maps.
    """

    def __init__(self, likelihood_fn: LikelihoodFn, batch_size: int):
        self.likelihood_fn = likelihood_fn
        self.batch_size = batch_size
        self.pending: collections.deque = collections.deque()  # (task, faces), in order
        self.waiting: list[np.ndarray] = []  # images without maps yet, in queue order
        self.done: list[tuple[np.ndarray, float]] = []  # (map, image log-lik), in order
        self.shards_written = 0
        self.frames_written = 0

    def add(self, task: ShardTask, faces: list[face_records.FaceExample]) -> None:
        self.pending.append((task, faces))
        self.waiting.extend(f.image for f in faces)
        while len(self.waiting) >= self.batch_size:
            self._compute(self.batch_size)
        self._write_ready()

    def finish(self) -> None:
        if self.waiting:
            self._compute(len(self.waiting))
        self._write_ready()

    def _compute(self, count: int) -> None:
        images = np.stack(self.waiting[:count])
        del self.waiting[:count]
        maps, lls = self.likelihood_fn(images)
        maps, lls = np.asarray(maps, np.float32), np.asarray(lls, np.float32)
        _check_outputs(images, maps, lls)
        self.done.extend(zip(maps, lls.tolist(), strict=True))

    def _write_ready(self) -> None:
        while self.pending and len(self.pending[0][1]) <= len(self.done):
            task, faces = self.pending.popleft()
            results, self.done = self.done[: len(faces)], self.done[len(faces) :]
            records = [
                likelihood_records.serialize_likelihood(face, loglik_map, loglik)
                for face, (loglik_map, loglik) in zip(faces, results, strict=True)
            ]
            files.write_shard_atomically(task.output_shard, records)
            self.shards_written += 1
            self.frames_written += len(records)


def extract_all(
    tasks: list[ShardTask],
    likelihood_fn: LikelihoodFn,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Writes the likelihood shard of every task whose output does not exist yet.

    Crops of consecutive videos share batches of exactly `batch_size` (only the last
    batch is smaller), so short videos still fill the accelerator. A face shard that
    cannot be read or whose crops differ in size is logged, counted and skipped.

    Returns:
      {"written": shards written, "skipped_complete": shards already there,
       "frames_written": crops processed, "bad_shards": [{"shard", "error"}]}.
    """
    todo = [t for t in tasks if not os.path.exists(t.output_shard)]
    bad_shards = []
    if len(todo) < len(tasks):
        logging.info("%d of %d videos already done; resuming.", len(tasks) - len(todo), len(tasks))
    batcher = _Batcher(likelihood_fn, batch_size)
    progress = tqdm(todo, desc="likelihood maps", unit="video")
    for task in progress:
        try:
            faces = read_faces(task.face_shard)
            if len({f.image.shape for f in faces}) > 1:
                raise ValueError("crops of different sizes in one shard")
        except (tf.errors.OpError, ValueError) as e:
            logging.error("Skipping unreadable face shard %s: %s", task.face_shard, e)
            bad_shards.append({"shard": task.face_shard, "error": str(e)})
            continue
        batcher.add(task, faces)
        progress.set_postfix(frames=batcher.frames_written)
    batcher.finish()
    return {
        "written": batcher.shards_written,
        "skipped_complete": len(tasks) - len(todo),
        "frames_written": batcher.frames_written,
        "bad_shards": bad_shards,
    }


def summarize(output_dir: str) -> dict[str, Any]:
    """Counts and mean image log-likelihood per split and source of the written shards.

    Returns {split: {source: {"videos", "frames", "mean_image_loglik",
    "mean_bits_per_dim"}}}.
    """
    totals: dict[tuple[str, str], dict[str, float]] = collections.defaultdict(
        lambda: {"videos": 0, "frames": 0, "loglik": 0.0, "dims": 0.0}
    )
    pattern = os.path.join(output_dir, "*", "*", "*" + SHARD_SUFFIX)
    for shard in files.list_shards(pattern):
        split, source, _ = os.path.relpath(shard, output_dir).split(os.sep)
        entry = totals[(split, source)]
        entry["videos"] += 1
        dataset = tf.data.TFRecordDataset(shard).map(likelihood_records.parse_image_loglik)
        for batch in dataset.batch(4096):
            entry["frames"] += int(batch["image_loglik"].shape[0])
            entry["loglik"] += float(tf.reduce_sum(tf.cast(batch["image_loglik"], tf.float64)))
            sizes = tf.cast(batch["map_size"], tf.float64)
            entry["dims"] += float(tf.reduce_sum(sizes[:, 0] * sizes[:, 1] * 3.0))
    summary: dict[str, dict[str, Any]] = collections.defaultdict(dict)
    for (split, source), entry in sorted(totals.items()):
        frames = entry["frames"]
        summary[split][source] = {
            "videos": int(entry["videos"]),
            "frames": int(frames),
            "mean_image_loglik": entry["loglik"] / frames if frames else None,
            "mean_bits_per_dim": (
                -entry["loglik"] / (entry["dims"] * np.log(2.0)) if frames else None
            ),
        }
    return dict(summary)


def prepare_output(output_dir: str, config: dict[str, Any]) -> None:
    """Writes `config.json` first, refusing to mix maps of two different UBMs.

    Raises:
      ValueError: the folder already holds maps made with other UBM weights.
    """
    path = os.path.join(output_dir, CONFIG_FILE)
    previous = read_json(path)
    if previous and previous.get("ubm_fingerprint") != config["ubm_fingerprint"]:
        raise ValueError(
            f"{output_dir!r} holds likelihood maps of another UBM (weights "
            f"{previous.get('ubm_fingerprint')}, now {config['ubm_fingerprint']}): use a new "
            "--workdir, or delete that folder to recompute every map."
        )
    write_json_atomically(path, config)


def extract_likelihoods(
    config: ExperimentConfig,
    workdir: Workdir,
    ubm_dir: str | None = None,
    faces_dir: str | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """The `extract_likelihoods` stage: loads the UBM and maps every face crop.

    Args:
      config: the experiment configuration (its name is recorded in `config.json`).
      workdir: the run's work directory; output goes to its `likelihoods/`.
      ubm_dir: the folder train_ubm wrote (its EMA weights are used); None: the
        workdir's `ubm/`.
      faces_dir: the folder prepare_faces wrote (`<split>/<source>/<video>.tfrecord`);
        None: the workdir's `faces/`.
      batch_size: crops per forward pass.

    Returns:
      The manifest written to `likelihoods/manifest.json`: the UBM and faces folders,
      the UBM fingerprint, `shards_total`, `last_run` (what this invocation did, see
      `extract_all`) and `counts` (per split and source, all shards).

    Raises:
      FileNotFoundError: no UBM checkpoint in `ubm_dir`, or no face shards.
      ValueError: bad batch size, or the output folder holds maps of another UBM.
      PermissionError: the output folder cannot be written.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    ubm_dir = ubm_dir or workdir.ubm
    faces_dir = faces_dir or workdir.faces
    output_dir = workdir.likelihoods
    tasks = plan_shards(faces_dir, output_dir)  # fail on bad faces before loading the UBM
    if not os.path.isdir(ubm_dir):
        raise FileNotFoundError(
            f"UBM folder {ubm_dir!r} does not exist: train the UBM first "
            "(python -m experiments.train_ubm), or point --ubm_dir at the `ubm` folder it wrote."
        )
    files.check_writable(output_dir)
    model = likelihood.load_ubm(ubm_dir)
    fingerprint = model_fingerprint([np.asarray(w) for w in model.weights])
    prepare_output(
        output_dir,
        {
            "config": config.name,
            "ubm_dir": ubm_dir,
            "ubm_fingerprint": fingerprint,
            "faces_dir": faces_dir,
            "batch_size": batch_size,
            "units": "nats per pixel, RGB joint; image_loglik = sum of the map",
        },
    )
    logging.info("UBM %s (weights %s): %d face shards.", ubm_dir, fingerprint, len(tasks))

    def likelihood_fn(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return likelihood.likelihood_maps(model, images, batch_size=batch_size)

    stats = extract_all(tasks, likelihood_fn, batch_size=batch_size)
    manifest = {
        "ubm_dir": ubm_dir,
        "ubm_fingerprint": fingerprint,
        "faces_dir": faces_dir,
        "shards_total": len(tasks),
        "last_run": stats,  # this invocation; `counts` covers every finished shard
        "counts": summarize(output_dir),
    }
    write_json_atomically(os.path.join(output_dir, MANIFEST_FILE), manifest)
    return manifest
