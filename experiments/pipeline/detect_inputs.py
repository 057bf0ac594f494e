"""The files a detect run scores: `--input` paths, folders and globs expanded.

Each PATH is a video, an image, a folder (searched recursively: every video and image
inside) or a glob (`*`, `?`, `[...]`; `**` crosses folders), in any mix. What a file is
follows its extension (`detector.input_kind`: `VIDEO_EXTENSIONS`, `IMAGE_EXTENSIONS`).

- A file named directly (or matched by a glob) that is neither a video nor an image is
  kept, with kind None: the report records it as a failed input, since the user asked
  for it by name.
- Inside a folder, files that are neither are skipped and only counted (`skipped` in
  the report): a folder of videos commonly holds metadata, subtitles, etc. (unless the
  same file is also named directly).
- A PATH that matches nothing is an error (`NoInputError`): nothing is scored.

Files are listed in the order of the PATHs, each folder's files sorted, and a file
given twice is scored once.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Callable, Iterable

from data_prep.face_manifest import OK
from data_prep.methods import ORIGINAL

KindOf = Callable[[str], "str | None"]


class NoInputError(ValueError):
    """An --input PATH matches no file."""


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One file to score: its path as the user will recognise it, and its kind."""

    path: str
    kind: str | None  # "video", "image" or None (neither: recorded as an error)


@dataclasses.dataclass
class ExpandedInputs:
    """Every file to score, and the non-media files skipped inside folders."""

    files: list[InputFile]
    skipped: list[str]


def _has_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _folder_files(folder: str) -> Iterable[str]:
    """Every file under `folder`, recursively, sorted per folder (deterministic)."""
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            yield os.path.join(root, name)


def expand_inputs(paths: Iterable[str], kind_of: KindOf) -> ExpandedInputs:
    """Expands --input PATHs (files, folders, globs) into the files to score.

    Args:
      paths: the PATHs as given.
      kind_of: a file path -> "video", "image" or None (`detector.input_kind`).

    Raises:
      NoInputError: a PATH names nothing that exists, or a glob matches nothing; or
        no PATH was given.
    """
    paths = list(paths)
    if not paths:
        raise NoInputError("No --input given: name a video, an image, a folder or a glob.")
    files: list[InputFile] = []
    seen: set[str] = set()

    skipped_keys: dict[str, str] = {}  # realpath -> path of files skipped in folders

    def add(path: str, inside_folder: bool) -> None:
        key = os.path.realpath(path)
        if key in seen:
            return
        kind = kind_of(path)
        if kind is None and inside_folder:
            skipped_keys.setdefault(key, path)
            return
        seen.add(key)
        skipped_keys.pop(key, None)  # named directly after all: an input, not a skip
        files.append(InputFile(path, kind))

    for pattern in paths:
        if _has_magic(pattern):
            matches = sorted(glob.glob(pattern, recursive=True))
        elif os.path.exists(pattern):
            matches = [pattern]
        else:
            matches = []
        if not matches:
            raise NoInputError(
                f"--input={pattern!r} matches no file or folder: check the path (a glob "
                "must be quoted so that the shell leaves it to detect)."
            )
        for match in matches:
            if os.path.isdir(match):
                for path in _folder_files(match):
                    add(path, inside_folder=True)
            else:
                add(match, inside_folder=False)
    return ExpandedInputs(files, list(skipped_keys.values()))


def input_keys(files: list[InputFile]) -> list[str]:
    """A distinct output name per input: `<stem>_<n>`, n its place in the list.

    Two inputs may share a stem (`a/000.mp4`, `b/000.mp4`); the index keeps their
    frame folders and overlay videos apart.
    """
    return [f"{os.path.splitext(os.path.basename(f.path))[0]}_{n}" for n, f in enumerate(files)]


def sample_test_videos(manifest: dict, count: int = 4) -> list[str]:
    """Up to `count` source files of test-split videos the face stage cropped, both labels.

    `manifest` is `faces/manifest.json` (per video `path`, `method`, `split`, `status`,
    `faces`). Originals and fakes alternate (first original, first fake, ...), each in
    manifest order, so a few inputs show both verdicts; videos without a face or a path
    are passed over.
    """
    usable = [
        v
        for v in manifest.get("videos", [])
        if v.get("split") == "test" and v.get("status") == OK and v.get("faces") and v.get("path")
    ]
    real = [v["path"] for v in usable if v.get("method") == ORIGINAL]
    fake = [v["path"] for v in usable if v.get("method") != ORIGINAL]
    mixed = [p for pair in zip(real, fake, strict=False) for p in pair]
    shorter = len(mixed) // 2
    mixed += real[shorter:] + fake[shorter:]
    return mixed[:count]
