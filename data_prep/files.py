"""Files of the pipeline: the one atomic writer, safe reads, shard listing, writability.

Every file a stage produces (JSON, CSV, text, TFRecord shards) is written under a
temporary name beside its destination and renamed when complete, so a reader never
takes a half-written file for a finished one and an interrupted stage leaves nothing
it would later mistake for output.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

TMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_path(path: str, tmp: str | None = None) -> Iterator[str]:
    """Yields a temporary path to write; renames it to `path` if the block succeeds.

    The parent folder is created. On an exception the temporary file is removed and
    `path` is left as it was.

    Args:
      path: the destination.
      tmp: the temporary name, in the same folder (default `path + ".tmp"`); for
        writers that need the extension kept (video containers) or a hidden name.
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = tmp or path + TMP_SUFFIX
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomically(path: str, text: str) -> None:
    """Writes `text` to `path` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def write_json_atomically(path: str, obj: Any, sort_keys: bool = False) -> None:
    """Writes `obj` as indented JSON (non-JSON values as their str) atomically."""
    write_text_atomically(path, json.dumps(obj, indent=2, default=str, sort_keys=sort_keys) + "\n")


def read_json(path: str) -> Any | None:
    """The parsed JSON file at `path`, or None where it does not exist."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_shard_atomically(path: str, records: Iterable[bytes]) -> int:
    """Writes serialised examples to the TFRecord `path` atomically; returns the count."""
    import tensorflow as tf  # only shard writers pay for TensorFlow

    count = 0
    with atomic_path(path) as tmp, tf.io.TFRecordWriter(tmp) as writer:
        for record in records:
            writer.write(record)
            count += 1
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


def check_writable(folder: str, what: str = "--workdir") -> None:
    """Creates `folder` and checks that a file can be written in it.

    Raises:
      PermissionError: it cannot be created or written; the message names `what`
        (the flag or setting the user chose it with) and says what to do.
    """
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise PermissionError(
            f"Cannot write to {what}={folder!r} ({err.strerror or err}): choose a writable folder."
        ) from None
