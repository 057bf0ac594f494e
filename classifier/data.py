"""Likelihood records to in-memory arrays for the detector.

Reads the shards of the `extract_likelihoods` stage
(`LIKELIHOODS/<split>/<source>/<video>.tfrecord`, schema
`data_prep.likelihood_records`) into a `LikelihoodSet`: the maps and, per map, the
metadata the protocols and metrics need. Split, method and label come from the
records themselves, not from folder names, so every check on the training data is a
check on what the classifier is actually given. The paper's setting (1,000 real and
4,000 fake videos, 32 frames each, 64x64 float32 maps) needs about 2.6 GB.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from data_prep import files, likelihood_records
from data_prep.methods import order_methods

SHARD_SUFFIX = ".tfrecord"
# LikelihoodSet field <- (likelihood-record feature, NumPy dtype), for every field but maps.
_RECORD_COLUMNS: dict[str, tuple[str, type]] = {
    "labels": ("label", np.int64),
    "methods": ("method", str),
    "videos": ("video", str),
    "frames": ("frame", np.int64),
    "splits": ("split", str),
    "image_loglik": ("image_loglik", np.float32),
}


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
        dataset = tf.data.TFRecordDataset(shard).map(likelihood_records.parse_map_features)
        for batch in dataset.batch(1024):
            sizes = batch["map_size"].numpy()
            if np.any(sizes != map_size):
                return f"{shard} has maps of size {sizes[np.any(sizes != map_size, axis=1)][0]}"
    return "a shard"


def _load_shards(shards: list[str], map_size: int) -> LikelihoodSet:
    dataset = tf.data.TFRecordDataset(shards).map(
        likelihood_records.parse_map_features, num_parallel_calls=tf.data.AUTOTUNE
    )
    parts: dict[str, list[np.ndarray]] = {f.name: [] for f in _FIELDS}
    for batch in dataset.batch(2048):
        sizes = batch["map_size"].numpy()
        if np.any(sizes != map_size):
            raise ValueError(
                f"Likelihood maps of mismatched size: {_find_bad_map_shard(shards, map_size)}, "
                f"but the detector expects {map_size}x{map_size}. Extract all maps with the "
                "same crop size (prepare_faces' 64x64), or set the detector's map size."
            )
        raw = batch["loglik_map"].numpy()
        parts["maps"].append(
            np.frombuffer(b"".join(raw), "<f4").reshape(len(raw), map_size, map_size)
        )
        for name, (feature, dtype) in _RECORD_COLUMNS.items():
            parts[name].append(batch[feature].numpy().astype(dtype))
    if not parts["maps"]:
        return empty_set(map_size)
    return LikelihoodSet(**{k: np.concatenate(v) for k, v in parts.items()})


def load_likelihoods(
    likelihoods_dir: str,
    splits: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    map_size: int = 64,
) -> LikelihoodSet:
    """Loads the likelihood maps of the given splits and sources into memory.

    Args:
      likelihoods_dir: the folder extract_likelihoods wrote.
      splits, sources: folders to read (None: all found). Absent ones are skipped.
      map_size: the expected map side; every map must be map_size x map_size.

    Returns:
      A LikelihoodSet in (split, source, video) order.

    Raises:
      FileNotFoundError: `likelihoods_dir` holds no likelihood shards at all.
      ValueError: a map has another size than map_size x map_size.
    """
    found = available_sources(likelihoods_dir)
    if not found:
        raise _no_likelihoods(likelihoods_dir)
    parts = []
    for split in sorted(found) if splits is None else splits:
        for source in found.get(split, []):
            if sources is not None and source not in sources:
                continue
            pattern = os.path.join(likelihoods_dir, split, source, "*" + SHARD_SUFFIX)
            parts.append(_load_shards(files.list_shards(pattern), map_size))
    data = concatenate(parts, map_size)
    logging.info("Loaded %d likelihood maps from %s.", len(data), likelihoods_dir)
    return data
