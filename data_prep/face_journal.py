"""The face stage's progress journal: one fsynced JSON line per finished video.

`<out_dir>/progress.jsonl` is appended to after a video's shard has been renamed into
place, so it is the record of the videos done: a re-run skips those whose line says
`ok` and whose shard exists. A run killed mid-line leaves at most one torn last line,
which readers ignore and the next writer ends, so it stays one bad line.
"""

from __future__ import annotations

import json
import os
from typing import Any

PROGRESS = "progress.jsonl"


def entry_key(entry: dict[str, Any]) -> str:
    """`method/video`, the key of a manifest or journal entry (as `VideoEntry.key`)."""
    return f"{entry['method']}/{entry['video']}"


def read_progress(out_dir: str) -> dict[str, dict[str, Any]]:
    """The latest journal entry per video key (`method/video`); torn lines are ignored."""
    entries: dict[str, dict[str, Any]] = {}
    path = os.path.join(out_dir, PROGRESS)
    if not os.path.exists(path):
        return entries
    with open(path) as f:
        for line in f:
            try:
                entry = json.loads(line)
                entries[entry_key(entry)] = entry
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # the last line of a killed run may be cut short
    return entries


class Journal:
    """Append-only, fsynced progress log; use as a context manager."""

    def __init__(self, out_dir: str):
        path = os.path.join(out_dir, PROGRESS)
        needs_newline = False
        if os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                needs_newline = f.read(1) != b"\n"
        self._file = open(path, "a")  # noqa: SIM115 - closed in close()
        if needs_newline:  # end a line torn by a kill, so it stays one bad line
            self._file.write("\n")

    def append(self, entry: dict[str, Any]) -> None:
        """Writes one entry as a line and syncs it to disk."""
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
