"""Atomic TFRecord shard writing and safe shard listing, shared by every schema.

A shard is written under a temporary name and renamed when complete, so an
interrupted run never leaves a partial shard that a reader would take for data.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable

import tensorflow as tf

TMP_SUFFIX = ".tmp"


def write_shard_atomically(path: str, records: Iterable[bytes]) -> int:
    """Writes serialised examples to `path` via a temporary file; returns the count."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp_path = path + TMP_SUFFIX
    count = 0
    with tf.io.TFRecordWriter(tmp_path) as writer:
        for record in records:
            writer.write(record)
            count += 1
    os.replace(tmp_path, path)
    return count


def list_shards(pattern: str) -> list[str]:
    """Sorted shard paths matching a glob pattern, leaving out temporary files.

    Raises:
      FileNotFoundError: nothing matches; the message names the pattern.
    """
    paths = sorted(p for p in glob.glob(pattern) if not p.endswith(TMP_SUFFIX))
    if not paths:
        raise FileNotFoundError(
            f"No TFRecord shards match {pattern!r}: check the path, or run the stage "
            "that writes them first."
        )
    return paths
