"""Likelihood records for the detector, streamed with tf.data (the one reader of them).

Reads the shards of the `extract_likelihoods` stage
(`LIKELIHOODS/<split>/<source>/<video>.tfrecord`, schema
`data_prep.likelihood_records`). Split, method and label come from the records
themselves, not from folder names, so every check on the training data is a check on
what the classifier is actually given.

- Streamed (the detection stage): `scan_folders` reads every folder once and keeps
  only counts, the videos and the running mean/variance of the maps (`MapScan`, for
  the standardisation, the class weights, the protocol checks and the map-size check
  before any training); `stream_maps` then yields the maps folder by folder, never
  holding more than a tf.data buffer. Memory does not grow with the number of maps.
- `LikelihoodSet` holds arrays of maps and their metadata: the protocol checks take one
  per distinct (split, method, label) of a scan (`MapScan.kinds_set`). Nothing loads a
  whole folder into memory: the paper's setting (1,000 real and 4,000 fake
  videos, 32 frames each, 64x64 float32 maps) would need about 2.6 GB.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from classifier.inputs import CHANNELS, MAPS, PLANES, np_planes, planes, select
from data_prep import face_records, files, likelihood_records
from data_prep.methods import order_methods

SHARD_SUFFIX = ".tfrecord"
_SCAN_BATCH = 512  # maps per batch of the statistics pass: 16 MiB of float64 values
_INTERLEAVE = 32  # shards read in turn while training (open readers: 256 KiB each)


@dataclasses.dataclass(frozen=True)
class LikelihoodSet:
    """N likelihood maps with their metadata (arrays aligned on the first axis).

    maps: float32 [N, H, W] nats; labels: int64 [N] (0 real, 1 fake); methods: str [N]
    (`original` or the method); videos: str [N] (FF++ id, `519` or `519_515`);
    frames: int64 [N]; splits: str [N]; image_loglik: float32 [N].
    """

    maps: np.ndarray
    labels: np.ndarray
    methods: np.ndarray
    videos: np.ndarray
    frames: np.ndarray
    splits: np.ndarray
    image_loglik: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, mask: np.ndarray) -> LikelihoodSet:
        """The examples where the boolean (or index) `mask` selects."""
        return LikelihoodSet(**{f.name: getattr(self, f.name)[mask] for f in _FIELDS})

    @property
    def video_keys(self) -> np.ndarray:
        """`<method>/<video>` per example: unique per video across methods (str [N])."""
        return np.char.add(np.char.add(self.methods.astype(str), "/"), self.videos.astype(str))

    def composition(self) -> dict[str, dict[str, int]]:
        """{source: {"videos", "frames"}}: what the set holds, for the records."""
        keys = self.video_keys
        return {
            str(m): {
                "videos": int(len(np.unique(keys[self.methods == m]))),
                "frames": int(np.sum(self.methods == m)),
            }
            for m in np.unique(self.methods)
        }


_FIELDS = dataclasses.fields(LikelihoodSet)


def empty_set(map_size: int = 64) -> LikelihoodSet:
    """A LikelihoodSet with no examples."""
    return LikelihoodSet(
        maps=np.zeros((0, map_size, map_size), np.float32),
        labels=np.zeros((0,), np.int64),
        methods=np.zeros((0,), str),
        videos=np.zeros((0,), str),
        frames=np.zeros((0,), np.int64),
        splits=np.zeros((0,), str),
        image_loglik=np.zeros((0,), np.float32),
    )


def concatenate(sets: Sequence[LikelihoodSet], map_size: int = 64) -> LikelihoodSet:
    """One LikelihoodSet holding the examples of `sets` in order."""
    sets = [s for s in sets if len(s)]
    if not sets:
        return empty_set(map_size)
    return LikelihoodSet(
        **{f.name: np.concatenate([getattr(s, f.name) for s in sets]) for f in _FIELDS}
    )


def available_sources(likelihoods_dir: str) -> dict[str, list[str]]:
    """{split: [sources with at least one shard]} found under `likelihoods_dir`."""
    found: dict[str, list[str]] = {}
    if not os.path.isdir(likelihoods_dir):
        return found
    for split in sorted(os.listdir(likelihoods_dir)):
        split_dir = os.path.join(likelihoods_dir, split)
        if not os.path.isdir(split_dir):
            continue
        sources = [
            s
            for s in sorted(os.listdir(split_dir))
            if any(name.endswith(SHARD_SUFFIX) for name in os.listdir(os.path.join(split_dir, s)))
        ]
        if sources:
            found[split] = sources
    return found


def _no_likelihoods(likelihoods_dir: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"No likelihood shards under {likelihoods_dir!r}: run extract_likelihoods first, "
        "or point --likelihoods_dir at the `likelihoods` folder it wrote."
    )


def find_methods(likelihoods_dir: str) -> tuple[str, ...]:
    """The manipulation methods with shards in any split, in `order_methods` order.

    The methods of a run are those of its data (folders `<split>/<method>/`), not a
    fixed list: a dataset with a fifth method gets a fifth detector and table column.

    Raises:
      FileNotFoundError: `likelihoods_dir` holds no likelihood shards at all.
    """
    found = available_sources(likelihoods_dir)
    if not found:
        raise _no_likelihoods(likelihoods_dir)
    return order_methods(s for sources in found.values() for s in sources)


def _find_bad_map_shard(shards: Iterable[str], map_size: int) -> str:
    for shard in shards:
        for batch in likelihood_records.read_records([shard], ("map_size",)).batch(1024):
            sizes = batch["map_size"].numpy()
            if np.any(sizes != map_size):
                return f"{shard} has maps of size {sizes[np.any(sizes != map_size, axis=1)][0]}"
    return "a shard"


def _size_error(shards: Sequence[str], map_size: int) -> ValueError:
    return ValueError(
        f"Likelihood maps of mismatched size: {_find_bad_map_shard(shards, map_size)}, "
        f"but the detector expects {map_size}x{map_size}. Extract all maps with the "
        "same crop size (prepare_faces' 64x64), or set the detector's map size."
    )


@dataclasses.dataclass
class MapScan:
    """What one streaming pass over some likelihood records learnt, without the maps.

    count: records; label_counts: int64 [2] (real, fake); videos: {method: set of
    videos}; frames: {method: records}; kinds: the distinct (split, method, label) of
    the records; means, m2s: float64 [len(inputs.PLANES)], the running mean and sum of
    squared deviations of every plane's values (the map and the crop's red, green,
    blue and grey), combined batch by batch with Chan et al.'s parallel formula, which
    keeps full precision where E[x^2] - E[x]^2 would cancel; values: values seen per
    plane. `mean` and `std` are the map's.
    """

    count: int = 0
    label_counts: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(2, np.int64))
    videos: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    frames: dict[str, int] = dataclasses.field(default_factory=dict)
    kinds: set[tuple[str, str, int]] = dataclasses.field(default_factory=set)
    means: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(len(PLANES)))
    m2s: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(len(PLANES)))
    values: int = 0

    def add_moments(self, values: int, means: np.ndarray, m2s: np.ndarray) -> None:
        """Merges the moments of `values` more values of every plane into the running ones."""
        if values == 0:
            return
        total = self.values + values
        delta = np.asarray(means, np.float64) - self.means
        self.means = self.means + delta * values / total
        self.m2s = (
            self.m2s + np.asarray(m2s, np.float64) + delta * delta * self.values * values / total
        )
        self.values = total

    def merge(self, other: MapScan) -> None:
        """Adds the records of `other` (another scan) to this one."""
        self.count += other.count
        self.label_counts = self.label_counts + other.label_counts
        for method, videos in other.videos.items():
            self.videos.setdefault(method, set()).update(videos)
            self.frames[method] = self.frames.get(method, 0) + other.frames[method]
        self.kinds |= other.kinds
        self.add_moments(other.values, other.means, other.m2s)

    @property
    def mean(self) -> float:
        """Mean of the map values (0 where none)."""
        return float(self.means[PLANES.index("map")])

    def standardization(self, kind: str = MAPS) -> tuple[list[float], list[float]]:
        """Per-channel mean and standard deviation (floored at 1e-6) of the input `kind`."""
        stds = np.sqrt(self.m2s / self.values) if self.values else np.zeros(len(PLANES))
        index = [PLANES.index(c) for c in CHANNELS[kind]]
        return (
            [float(self.means[i]) for i in index],
            [max(float(stds[i]), 1e-6) for i in index],
        )

    @property
    def std(self) -> float:
        """Population standard deviation of the map values (0 where none)."""
        m2 = self.m2s[PLANES.index("map")]
        return float(np.sqrt(m2 / self.values)) if self.values else 0.0

    def composition(self) -> dict[str, dict[str, int]]:
        """{source: {"videos", "frames"}}, as `LikelihoodSet.composition`."""
        return {
            m: {"videos": len(self.videos[m]), "frames": self.frames[m]}
            for m in sorted(self.frames)
        }

    def kinds_set(self) -> LikelihoodSet:
        """One example per distinct (split, method, label), without maps ([K, 0, 0]).

        Enough for the set-membership checks of `classifier.protocols` (splits,
        sources, labels against sources, both classes present): they then hold for
        every record the scan read.
        """
        rows = sorted(self.kinds)
        n = len(rows)
        return LikelihoodSet(
            maps=np.zeros((n, 0, 0), np.float32),
            labels=np.array([r[2] for r in rows], np.int64),
            methods=np.array([r[1] for r in rows], str),
            videos=np.array([""] * n, str),
            frames=np.zeros(n, np.int64),
            splits=np.array([r[0] for r in rows], str),
            image_loglik=np.zeros(n, np.float32),
        )


def combine_scans(scans: Iterable[MapScan]) -> MapScan:
    """One MapScan of all the maps of `scans`."""
    total = MapScan()
    for scan in scans:
        total.merge(scan)
    return total


def folder_shards(likelihoods_dir: str, split: str, source: str) -> list[str]:
    """The sorted shards of `<split>/<source>/` ([] where the folder has none)."""
    pattern = os.path.join(likelihoods_dir, split, source, "*" + SHARD_SUFFIX)
    try:
        return files.list_shards(pattern)
    except FileNotFoundError:
        return []


def _scan_shards(shards: list[str], split: str, source: str, map_size: int) -> MapScan:
    scan = MapScan()
    dataset = likelihood_records.read_records(
        shards, ("map_size", "split", "method", "label", "video", "loglik_map", "image")
    )
    for batch in dataset.batch(_SCAN_BATCH).prefetch(1):
        sizes = batch["map_size"].numpy()
        if np.any(sizes != map_size):
            raise _size_error(shards, map_size)
        splits = batch["split"].numpy().astype(str)
        methods = batch["method"].numpy().astype(str)
        labels = batch["label"].numpy().astype(np.int64)
        videos = batch["video"].numpy().astype(str)
        # The folder's records only, as a protocol's selection by record split and
        # method would take them (`classifier.protocols.select`).
        keep = (splits == split) & (methods == source)
        if not np.all(keep):
            logging.warning(
                "%s/%s: %d records of another split or method; left out.",
                split,
                source,
                int(np.sum(~keep)),
            )
        if not np.any(keep):
            continue
        raw = [r for r, k in zip(batch["loglik_map"].numpy(), keep, strict=True) if k]
        maps = np.frombuffer(b"".join(raw), "<f4").reshape(len(raw), map_size, map_size)
        pixels = [r for r, k in zip(batch["image"].numpy(), keep, strict=True) if k]
        images = np.frombuffer(b"".join(pixels), np.uint8).reshape(len(raw), map_size, map_size, 3)
        values = np_planes(maps, images).reshape(-1, len(PLANES))
        batch_means = values.mean(axis=0)
        scan.add_moments(len(values), batch_means, np.sum((values - batch_means) ** 2, axis=0))
        labels = labels[keep]
        scan.count += len(labels)
        scan.label_counts += np.bincount(labels, minlength=2)[:2]
        scan.videos.setdefault(source, set()).update(videos[keep].tolist())
        scan.frames[source] = scan.frames.get(source, 0) + len(labels)
        scan.kinds |= {(split, source, int(label)) for label in np.unique(labels)}
    return scan


def scan_folders(
    likelihoods_dir: str,
    sources: Sequence[str] | None = None,
    map_size: int = 64,
) -> dict[tuple[str, str], MapScan]:
    """Reads every `<split>/<source>/` folder once, keeping statistics, not maps.

    Every map of every folder read is checked for its size before anything uses it,
    so a tree of mixed map sizes fails here, before any training.

    Args:
      likelihoods_dir: the folder extract_likelihoods wrote.
      sources: the source folders to read (None: all found); absent ones are skipped.
      map_size: the expected map side.

    Returns:
      {(split, source): MapScan of that folder's records of that split and method}.

    Raises:
      FileNotFoundError: `likelihoods_dir` holds no likelihood shards at all.
      ValueError: a map has another size than map_size x map_size.
    """
    found = available_sources(likelihoods_dir)
    if not found:
        raise _no_likelihoods(likelihoods_dir)
    scans = {}
    for split in sorted(found):
        for source in found[split]:
            if sources is not None and source not in sources:
                continue
            shards = folder_shards(likelihoods_dir, split, source)
            scans[(split, source)] = _scan_shards(shards, split, source, map_size)
    logging.info(
        "Scanned %d likelihood maps in %s.", sum(s.count for s in scans.values()), likelihoods_dir
    )
    return scans


def stream_maps(
    likelihoods_dir: str,
    split: str,
    sources: Sequence[str],
    map_size: int = 64,
    shuffle_seed: int | None = None,
    kind: str = MAPS,
) -> tf.data.Dataset:
    """The records of `<split>/<source>/` for `sources`, streamed, one at a time, with
    the detector's input of `kind` (`classifier.inputs`).

    Records of another split or method than their folder are left out (as
    `scan_folders` leaves them out of its counts).

    Args:
      likelihoods_dir, split, sources: the folders to read (absent ones skipped).
      map_size: the map side (checked by `scan_folders` beforehand).
      shuffle_seed: None: folder by folder, shards in sorted order (for scoring:
        `predictions.csv` rows in (source, video, frame) order). An int: the shard
        order is shuffled (afresh each pass, reproducibly from the seed) and
        `_INTERLEAVE` shards are read in turn, so that the example shuffle buffer of
        training is not filled with one source only.
      kind: the input: `maps` (the map as one channel), or a baseline's pixels.

    Returns:
      A dataset of dicts: `map` float32 [H, W], `input` float32 [H, W, C] (C channels
      of `kind`, not standardised), `label` int64 [], `method`, `video`, `split`
      string [], `frame` int64 [].
    """
    # Sorted folders, sorted shards: the order of the predictions rows.
    shards = [
        s for source in sorted(sources) for s in folder_shards(likelihoods_dir, split, source)
    ]
    wanted = tf.constant(list(sources), tf.string)

    metadata = ("label", "method", "video", "split", "frame")
    # The crop is read (and decoded) only for the pixel inputs.
    crop = () if kind == MAPS else ("image", "image_size")
    fields = (*metadata, "loglik_map", "map_size", *crop)

    def decode(parsed: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        loglik = likelihood_records.decode_map(parsed["loglik_map"], parsed["map_size"])
        loglik = tf.ensure_shape(loglik, [map_size, map_size])
        if kind == MAPS:
            features = loglik[..., None]
        else:
            image = face_records.decode_image(parsed["image"], parsed["image_size"])
            features = select(planes(loglik, image), kind)
        return {
            "map": loglik,
            "input": tf.ensure_shape(features, [map_size, map_size, len(CHANNELS[kind])]),
            **{k: parsed[k] for k in metadata},
        }

    def keep(example: dict[str, tf.Tensor]) -> tf.Tensor:
        return tf.logical_and(
            tf.equal(example["split"], split), tf.reduce_any(tf.equal(example["method"], wanted))
        )

    if not shards:
        return tf.data.Dataset.from_tensor_slices(
            {
                "map": tf.zeros([0, map_size, map_size], tf.float32),
                "input": tf.zeros([0, map_size, map_size, len(CHANNELS[kind])], tf.float32),
                "label": tf.zeros([0], tf.int64),
                "method": tf.zeros([0], tf.string),
                "video": tf.zeros([0], tf.string),
                "split": tf.zeros([0], tf.string),
                "frame": tf.zeros([0], tf.int64),
            }
        )
    if shuffle_seed is None:
        records = tf.data.TFRecordDataset(shards)
    else:
        records = (
            tf.data.Dataset.from_tensor_slices(shards)
            .shuffle(len(shards), seed=shuffle_seed, reshuffle_each_iteration=True)
            .interleave(
                tf.data.TFRecordDataset,
                cycle_length=min(_INTERLEAVE, len(shards)),
                block_length=1,
            )
        )
    parsed = likelihood_records.read_records(records, fields)
    return parsed.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).filter(keep)
