"""Small JSON files of the pipeline (configs, manifests, metrics): atomic write, safe read.

A JSON file is written under a temporary name and renamed when complete, like the
TFRecord shards (`tfrecord_io`), so a reader never takes a half-written file for a
finished stage.
"""

from __future__ import annotations

import json
import os
from typing import Any


def write_json_atomically(path: str, obj: Any) -> None:
    """Writes `obj` as indented JSON to `path` via a temporary file and a rename."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=str)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: str) -> Any | None:
    """The parsed JSON file at `path`, or None where it does not exist."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)
