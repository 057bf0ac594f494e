"""The official FaceForensics++ train/val/test splits.

FF++ (Roessler et al., ICCV 2019; `dataset/splits/{train,val,test}.json` of its code)
lists `[target, source]` identity pairs per split: 360 / 70 / 70 pairs. An original
video `a` belongs to the split listing a pair that contains `a`; a fake `a_b` to the
split listing `[a, b]` or `[b, a]`, so no identity crosses splits and every method has
720 / 140 / 140 fakes. The paper (Khodabakhsh & Busch, BIOSIG 2020) uses these splits.
"""

from __future__ import annotations

import dataclasses
import json
import os

from data_prep.methods import ORIGINAL, SPLITS


class SplitFileError(ValueError):
    """A split file is missing, does not parse, or contradicts another."""


def read_split_file(path: str) -> list[tuple[str, str]]:
    """The `[target, source]` pairs of one official split file.

    Raises:
      SplitFileError: the file is missing, is not JSON, or is not a list of pairs of
        two different ids; the message names the file and the problem.
    """
    if not os.path.isfile(path):
        raise SplitFileError(
            f"Split file {path} not found: point --splits_dir at the FF++ split folder "
            "(dataset/splits in the FaceForensics repository)."
        )
    try:
        with open(path) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SplitFileError(
            f"Split file {path} does not parse as JSON ({e}): restore it from the FF++ "
            "repository (dataset/splits)."
        ) from e
    if not isinstance(data, list):
        raise SplitFileError(
            f"Split file {path} must hold a JSON list of [target, source] pairs, "
            f"found {type(data).__name__}."
        )
    pairs = []
    for i, item in enumerate(data):
        if (
            not isinstance(item, list | tuple)
            or len(item) != 2
            or not all(isinstance(v, str) and v for v in item)
            or item[0] == item[1]
        ):
            raise SplitFileError(
                f"Split file {path}: entry {i} is {item!r}, expected a pair of two different "
                'id strings such as ["071", "054"].'
            )
        pairs.append((item[0], item[1]))
    return pairs


@dataclasses.dataclass
class SplitIndex:
    """Which split each identity and each (unordered) pair belongs to.

    `errors` holds one message per split file that could not be used (lenient load);
    videos of such a split are then in no split.
    """

    pairs: dict[str, list[tuple[str, str]]]
    errors: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self._identity: dict[str, str] = {}
        self._pair: dict[tuple[str, str], str] = {}
        for split, pairs in self.pairs.items():
            for a, b in pairs:
                for ident in (a, b):
                    other = self._identity.setdefault(ident, split)
                    if other != split:
                        raise SplitFileError(
                            f"Identity {ident} is listed in both the {other} and the {split} "
                            "split files: the split files contradict each other."
                        )
                self._pair[_key(a, b)] = split

    def split_of(self, video: str, method: str) -> str | None:
        """The split of a video id (`a` for originals, `a_b` for fakes), or None.

        Args:
          video: the file name without extension, e.g. "071" or "071_054".
          method: "original" or a manipulation method name.
        """
        if method == ORIGINAL:
            return self._identity.get(video)
        parts = video.split("_")
        if len(parts) != 2:
            return None
        return self._pair.get(_key(parts[0], parts[1]))

    def counts(self) -> dict[str, int]:
        """Pairs per split."""
        return {split: len(pairs) for split, pairs in self.pairs.items()}


def _key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def load_splits(splits_dir: str, strict: bool = True) -> SplitIndex:
    """Reads `train.json`, `val.json` and `test.json` from `splits_dir`.

    Args:
      splits_dir: folder holding the official split files.
      strict: if True any unusable file raises; if False it is recorded in
        `SplitIndex.errors` and its split left empty (at least one must load).

    Raises:
      FileNotFoundError: `splits_dir` is not a folder.
      SplitFileError: a file is unusable (strict), none is usable, or the files
        contradict each other.
    """
    if not splits_dir or not os.path.isdir(splits_dir):
        raise FileNotFoundError(
            f"Split folder {splits_dir!r} not found: pass --splits_dir with the FF++ split "
            "files train.json, val.json, test.json (dataset/splits in the FaceForensics "
            "repository)."
        )
    pairs: dict[str, list[tuple[str, str]]] = {}
    errors: list[str] = []
    for split in SPLITS:
        try:
            pairs[split] = read_split_file(os.path.join(splits_dir, f"{split}.json"))
        except SplitFileError as e:
            if strict:
                raise
            errors.append(str(e))
            pairs[split] = []
    if not any(pairs.values()):
        raise SplitFileError(
            f"No usable split file in {splits_dir}: " + " ".join(errors)
            if errors
            else f"The split files in {splits_dir} list no pairs."
        )
    return SplitIndex(pairs=pairs, errors=errors)
