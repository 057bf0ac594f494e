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
The output folder is a `data_prep.stage_folder.StageFolder`: `config.json` (written
first) records the UBM's weight fingerprint and the precision the network computed in,
so maps from two different UBMs or precisions are never mixed in one folder;
`manifest.json` has the counts. Input: a tf.data pipeline (shards
read and validated ahead, crops batched across videos, prefetch); every local GPU
maps a slice of each batch (MirroredStrategy) when there are several.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from data_prep import face_records, files, likelihood_records, stage_folder
from data_prep.stage_folder import StageFolder
from experiments.configs.base import ExperimentConfig
from experiments.pipeline.workdir import SHARD_SUFFIX, Workdir
from pixelcnn_pp import likelihood, strategies
from pixelcnn_pp.config import MIXED_PRECISION_POLICIES

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
    return list(face_records.read_examples(path))


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


_IMAGE_FIELDS = ("image", "image_size")


def read_shard_records(path: str) -> tuple[np.ndarray, tuple[int, int] | None]:
    """The serialised examples of one face shard, validated, and their crop size.

    Reads the whole shard (TFRecord framing and checksums) and parses every crop's
    size, so a corrupt shard fails here, with its own message, before any of its
    crops enters the input pipeline (where an error would end the whole stream).

    Returns:
      (object array [N] of bytes, (height, width) of every crop, or None when N = 0).

    Raises:
      tf.errors.OpError: the file is not a readable TFRecord file.
      ValueError: a record is not a face example, or the crops differ in size.
    """
    chunks = [batch for batch in tf.data.TFRecordDataset(path).batch(1024).as_numpy_iterator()]
    records = np.concatenate(chunks) if chunks else np.empty([0], object)
    if not len(records):
        return records, None
    try:
        parsed = face_records.parse_face_fields(tf.constant(records), _IMAGE_FIELDS)
    except tf.errors.InvalidArgumentError as e:
        raise ValueError(f"not a face-crop example ({e.message.splitlines()[0]})") from e
    sizes = parsed["image_size"].numpy()
    if (sizes != sizes[0]).any():
        raise ValueError("crops of different sizes in one shard")
    height, width = (int(v) for v in sizes[0])
    lengths = tf.strings.length(parsed["image"]).numpy()
    if (lengths != height * width * 3).any():
        raise ValueError(f"a crop's pixel bytes do not match its size {height}x{width}")
    return records, (height, width)


def _decode_batch(index: tf.Tensor, raw: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """[B] shard indices and serialised faces -> (indices, uint8 [B, H, W, 3], raw)."""
    parsed = face_records.parse_face_fields(raw, _IMAGE_FIELDS)
    size = tf.cast(parsed["image_size"][0], tf.int32)  # one size per run (validated)
    pixels = tf.io.decode_raw(parsed["image"], tf.uint8)
    images = tf.reshape(pixels, tf.concat([[-1], size, [3]], axis=0))
    return index, images, raw


class _ShardReader:
    """Reads and validates face shards ahead, in order, on a few threads.

    Iterating yields (task index int32 [N], serialised faces [N]) per good non-empty
    shard. Every shard that passes (empty ones too) is appended to `entered` with its
    crop count before any of its crops is yielded, so the consumer, which sees crops in
    order, knows how many results complete each video; bad shards go to `bad`.
    """

    def __init__(self, tasks: list[ShardTask], readers: int, readahead: int):
        self.tasks = tasks
        self.readers = readers
        self.readahead = max(readahead, readers)
        self.entered: collections.deque = collections.deque()  # (task, crop count)
        self.bad: list[dict[str, str]] = []
        self.crop_size: tuple[int, int] | None = None

    def _skip(self, task: ShardTask, error: str) -> None:
        logging.error("Skipping unreadable face shard %s: %s", task.face_shard, error)
        self.bad.append({"shard": task.face_shard, "error": error})

    def __call__(self):
        with concurrent.futures.ThreadPoolExecutor(self.readers) as pool:
            window: collections.deque = collections.deque()
            upcoming = iter(enumerate(self.tasks))
            for index, task in itertools.islice(upcoming, self.readahead):
                window.append((index, task, pool.submit(read_shard_records, task.face_shard)))
            while window:
                index, task, future = window.popleft()
                for nxt, nxt_task in itertools.islice(upcoming, 1):
                    window.append(
                        (nxt, nxt_task, pool.submit(read_shard_records, nxt_task.face_shard))
                    )
                try:
                    records, size = future.result()
                except tf.errors.OpError as e:
                    self._skip(task, e.message)
                    continue
                except ValueError as e:
                    self._skip(task, str(e))
                    continue
                if size is not None:
                    if self.crop_size is None:
                        self.crop_size = size
                    elif size != self.crop_size:
                        self._skip(
                            task,
                            f"crops of {size[0]}x{size[1]}, but the earlier shards' are "
                            f"{self.crop_size[0]}x{self.crop_size[1]}: one crop size per run",
                        )
                        continue
                self.entered.append((task, len(records)))
                if len(records):
                    yield np.full(len(records), index, np.int32), records


def _serialize_video(raws: list[bytes], maps: list[np.ndarray], lls: list[float]) -> list[bytes]:
    # The face is re-parsed and re-serialised as before, so records are unchanged; its
    # optional manipulation mask travels in the FaceExample, byte for byte.
    return [
        likelihood_records.serialize_likelihood(face_records.parse_face_numpy(raw), m, ll)
        for raw, m, ll in zip(raws, maps, lls, strict=True)
    ]


def extract_all(
    tasks: list[ShardTask],
    likelihood_fn: LikelihoodFn,
    batch_size: int = 64,
    *,
    readers: int = 4,
    readahead: int = 8,
) -> dict[str, Any]:
    """Writes the likelihood shard of every task whose output does not exist yet.

    A tf.data pipeline streams the face shards in order (read and validated ahead on
    `readers` threads, at most `readahead` shards held), batches their crops across
    videos and decodes each batch in parallel while the UBM maps the previous one
    (prefetch). Batches hold exactly `batch_size` crops (only the last is smaller), so
    short videos still fill the accelerator. A writer thread serialises and writes each
    video's shard atomically as soon as all its crops have maps. A face shard that
    cannot be read, or whose crops differ in size, is logged, counted and skipped
    before it enters the pipeline. Memory: the shards read ahead, a few batches, and
    the crops of the videos in flight.

    Args:
      tasks: the shards, in order (`plan_shards`).
      likelihood_fn: uint8 [N, H, W, 3], N <= batch_size -> (float32 [N, H, W] maps,
        float32 [N] image log-likelihoods).
      batch_size: crops per call of `likelihood_fn`.
      readers: threads reading and validating face shards.
      readahead: shards read ahead of the one being batched.

    Returns:
      {"written": shards written, "skipped_complete": shards already there,
       "frames_written": crops processed, "bad_shards": [{"shard", "error"}]}.
    """
    todo = stage_folder.pending(tasks, lambda task: task.output_shard)
    if len(todo) < len(tasks):
        logging.info("%d of %d videos already done; resuming.", len(tasks) - len(todo), len(tasks))
    reader = _ShardReader(todo, readers, readahead)
    dataset = (
        tf.data.Dataset.from_generator(
            reader,
            output_signature=(
                tf.TensorSpec([None], tf.int32),
                tf.TensorSpec([None], tf.string),
            ),
        )
        .unbatch()
        .batch(batch_size)
        .map(_decode_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(2)
    )
    progress = tqdm(total=len(todo), desc="likelihood maps", unit="video")
    stats = {"written": 0, "frames_written": 0}
    # Crops with maps whose video is not complete yet: (raw, map, image log-lik), in order.
    raws: list[bytes] = []
    maps_done: list[np.ndarray] = []
    lls_done: list[float] = []
    writes: collections.deque = collections.deque()

    def settle(limit: int) -> None:
        while len(writes) > limit:
            count = writes.popleft().result()  # re-raises a failed write
            stats["written"] += 1
            stats["frames_written"] += count
            progress.update(1)
            progress.set_postfix(frames=stats["frames_written"])

    def write_ready(pool: concurrent.futures.Executor) -> None:
        nonlocal raws, maps_done, lls_done
        while reader.entered and reader.entered[0][1] <= len(raws):
            task, count = reader.entered.popleft()
            chunk = (raws[:count], maps_done[:count], lls_done[:count])
            raws, maps_done, lls_done = raws[count:], maps_done[count:], lls_done[count:]
            writes.append(
                pool.submit(
                    lambda t, c: files.write_shard_atomically(t.output_shard, _serialize_video(*c)),
                    task,
                    chunk,
                )
            )
        settle(limit=4)  # a few videos may wait for the writer, not all of them

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        for _, images, raw in dataset.as_numpy_iterator():
            maps, lls = likelihood_fn(images)
            maps, lls = np.asarray(maps, np.float32), np.asarray(lls, np.float32)
            _check_outputs(images, maps, lls)
            raws.extend(raw.tolist())
            maps_done.extend(maps)
            lls_done.extend(lls.tolist())
            write_ready(pool)
        write_ready(pool)
        settle(limit=0)
    progress.update(len(reader.bad))
    progress.close()
    if raws or reader.entered:
        raise RuntimeError("Likelihood maps left over after the last video: a bug.")
    return {
        "written": stats["written"],
        "skipped_complete": len(tasks) - len(todo),
        "frames_written": stats["frames_written"],
        "bad_shards": reader.bad,
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
    groups: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for shard in files.list_shards(pattern):
        split, source, _ = os.path.relpath(shard, output_dir).split(os.sep)
        groups[(split, source)].append(shard)
    # One reader per split and source: a pipeline per shard costs a trace of the parser
    # each (minutes over FF++'s 5,000 videos).
    for key, shards in groups.items():
        entry = totals[key]
        entry["videos"] += len(shards)
        dataset = likelihood_records.read_records(shards, likelihood_records.IMAGE_LOGLIK_FIELDS)
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


def _precision_name(policy: str | None) -> str:
    return policy or "float32"  # "" and older folders without the key: float32


def _precision_of(config: dict[str, Any]) -> tuple[str, str]:
    """(network policy, convolution dtype) of a config.json (older ones: float32)."""
    return _precision_name(config.get("mixed_precision")), config.get("matmul_dtype") or "float32"


def _maps_clashes(saved: Mapping[str, Any], settings: Mapping[str, Any]) -> list[str]:
    """Maps of another UBM, or of the network in another precision, in the same folder."""
    found = []
    if saved.get("ubm_fingerprint") != settings["ubm_fingerprint"]:
        found.append(
            f"another UBM: weights {saved.get('ubm_fingerprint')}, now "
            f"{settings['ubm_fingerprint']}"
        )
    before, now = _precision_of(saved), _precision_of(settings)
    if before != now:
        found.append(
            f"computed in {before[0]} with {before[1]} convolutions, but this run computes in "
            f"{now[0]} with {now[1]} convolutions: maps of two precisions must not be mixed "
            f"(to add to them, re-run with --config.likelihoods.mixed_precision={before[0]} "
            f"--config.likelihoods.matmul_dtype={before[1]})"
        )
    return found


def output_folder(output_dir: str) -> StageFolder:
    """The stage folder of likelihood maps (`Workdir.likelihoods` or the background's)."""
    return StageFolder(
        output_dir,
        "likelihood maps",
        "use a new --workdir, or delete that folder to recompute every map",
    )


def prepare_output(output_dir: str, config: dict[str, Any]) -> None:
    """Writes `config.json` first, refusing to mix maps of two UBMs or two precisions.

    Raises:
      stage_folder.SettingsClashError (a ValueError): the folder already holds maps made
        with other UBM weights, or with the network in another precision
        (`mixed_precision`, `matmul_dtype`).
      PermissionError: the folder cannot be written.
    """
    output_folder(output_dir).claim(config, _maps_clashes)


def extract_likelihoods(
    config: ExperimentConfig,
    workdir: Workdir,
    ubm_dir: str | None = None,
    faces_dir: str | None = None,
    batch_size: int = 64,
    mixed_precision: str = "",
    *,
    output_dir: str | None = None,
    splits: Sequence[str] | None = None,
    matmul_dtype: str = "float32",
) -> dict[str, Any]:
    """The `extract_likelihoods` stage: loads the UBM and maps every face crop.

    Args:
      config: the experiment configuration (its name is recorded in `config.json`).
      workdir: the run's work directory; output goes to its `likelihoods/`.
      ubm_dir: the folder train_ubm wrote (its EMA weights are used); None: the
        workdir's `ubm/`.
      faces_dir: the folder prepare_faces wrote (`<split>/<source>/<video>.tfrecord`);
        None: the workdir's `faces/`.
      batch_size: crops per forward pass, over all GPUs together (split evenly among
        them when there are several).
      mixed_precision: the network's dtype policy: "" or "float32", "mixed_bfloat16",
        "mixed_float16"; the mixture likelihood and the maps stay float32.
      output_dir: where the maps go; None: the workdir's `likelihoods/` (the background
        model's maps go to `Workdir.background_likelihoods`).
      splits: the splits to map (e.g. ("val", "test")); None: every split.
      matmul_dtype: "float32", or "bfloat16": only the convolutions in bfloat16 (AMX or
        AVX512-BF16 on a CPU, tensor cores on a GPU), everything else float32
        (`pixelcnn_pp.layers`).

    Returns:
      The manifest written to `likelihoods/manifest.json`: the UBM and faces folders,
      the UBM fingerprint, the precision, `shards_total`, `last_run` (what this
      invocation did, see `extract_all`) and `counts` (per split and source, all shards).

    Raises:
      FileNotFoundError: no UBM checkpoint in `ubm_dir`, or no face shards.
      ValueError: bad batch size or precision, or the output folder holds maps of
        another UBM or another precision.
      PermissionError: the output folder cannot be written.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    if mixed_precision not in MIXED_PRECISION_POLICIES:
        raise ValueError(
            f"Unknown mixed_precision {mixed_precision!r}: choose one of "
            f"{', '.join(repr(p) for p in MIXED_PRECISION_POLICIES)}."
        )
    precision = _precision_name(mixed_precision)
    ubm_dir = ubm_dir or workdir.ubm
    faces_dir = faces_dir or workdir.faces
    output_dir = output_dir or workdir.likelihoods
    tasks = plan_shards(faces_dir, output_dir)  # fail on bad faces before loading the UBM
    if splits is not None:
        found = sorted({t.split for t in tasks})
        tasks = [t for t in tasks if t.split in splits]
        if not tasks:
            raise FileNotFoundError(
                f"Faces folder {faces_dir!r} holds no shards of the splits "
                f"{', '.join(splits)} (found: {', '.join(found)})."
            )
    if not os.path.isdir(ubm_dir):
        raise FileNotFoundError(
            f"UBM folder {ubm_dir!r} does not exist: train the UBM first "
            "(python -m experiments.train_ubm), or point --ubm_dir at the `ubm` folder it wrote."
        )
    # Several GPUs share each batch (mirrored); one GPU or the CPU: the default strategy.
    several_gpus = len(tf.config.list_logical_devices("GPU")) > 1
    strategy = strategies.make_strategy("mirrored" if several_gpus else "default")
    model = likelihood.load_ubm(
        ubm_dir, mixed_precision=precision, strategy=strategy, matmul_dtype=matmul_dtype
    )
    fingerprint = model_fingerprint([np.asarray(w) for w in model.weights])
    prepare_output(
        output_dir,
        {
            "config": config.name,
            "ubm_dir": ubm_dir,
            "ubm_fingerprint": fingerprint,
            "faces_dir": faces_dir,
            "batch_size": batch_size,
            "mixed_precision": precision,
            "matmul_dtype": matmul_dtype,
            "replicas": strategy.num_replicas_in_sync,
            "splits": sorted({t.split for t in tasks}),
            "units": "nats per pixel, RGB joint; image_loglik = sum of the map",
        },
    )
    logging.info(
        "UBM %s (weights %s, %s, %d replica(s), batch %d): %d face shards.",
        ubm_dir,
        fingerprint,
        precision,
        strategy.num_replicas_in_sync,
        batch_size,
        len(tasks),
    )
    likelihood_fn = likelihood.batch_likelihood_fn(model, batch_size, strategy)
    stats = extract_all(tasks, likelihood_fn, batch_size=batch_size)
    manifest = {
        "ubm_dir": ubm_dir,
        "ubm_fingerprint": fingerprint,
        "mixed_precision": precision,
        "matmul_dtype": matmul_dtype,
        "faces_dir": faces_dir,
        "shards_total": len(tasks),
        "last_run": stats,  # this invocation; `counts` covers every finished shard
        "counts": summarize(output_dir),
    }
    output_folder(output_dir).write_manifest(manifest)
    return manifest
