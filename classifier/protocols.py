"""The two evaluation protocols of the paper: known attacks and leave-one-out.

Khodabakhsh & Busch (BIOSIG 2020):
- Table 1, known attacks: for each method X, train on real + X (train split), select
  the epoch on real + X (val split), test on real + X (test split).
- Table 2, unknown attacks (leave-one-out): for each method X, train on real + the
  other methods (train split), select on real + the other methods (val split): never
  a frame of X. Test on real + X (test split).
- `all` (not a table of the paper; the detector to deploy): one detector, named `all`,
  trained on real + every method (train split), selected on real + every method (val
  split), tested on real + every method (test split).

The test split is only ever used for the final report; `build_protocol_data` returns
it apart from the training and selection data, and `check_training_data` verifies, on
the very arrays handed to the classifier, that no held-out frame and no frame outside
the train/val splits is among them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from classifier.config import ALL, DETECTION_PROTOCOLS
from classifier.config import PROTOCOLS as PROTOCOLS  # the tables' two, re-exported
from classifier.data import LikelihoodSet
from data_prep.methods import ORIGINAL, SPLITS


class EmptySplitError(ValueError):
    """A split of a protocol has no real or no fake examples."""


@dataclasses.dataclass(frozen=True)
class ProtocolSpec:
    """Which sources each split of one protocol run draws on."""

    protocol: str
    method: str  # the method under test (Table 1 column / held-out method; "all" for all)
    train_sources: tuple[str, ...]
    val_sources: tuple[str, ...]
    test_sources: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ProtocolData:
    """The examples of one protocol run, split by role."""

    spec: ProtocolSpec
    train: LikelihoodSet
    val: LikelihoodSet
    test: LikelihoodSet


def protocol_spec(protocol: str, method: str, pool: Sequence[str]) -> ProtocolSpec:
    """The sources of each split for `protocol` and the method under test.

    Args:
      protocol: "known", "loo" or "all".
      method: the method X of the Table column; for "all", "all".
      pool: all manipulation methods of the study, as found in the data (LOO trains
        on pool minus X, "all" on the whole pool).

    Raises:
      ValueError: unknown protocol, or X not in the pool.
    """
    if protocol not in DETECTION_PROTOCOLS:
        raise ValueError(
            f"Unknown protocol {protocol!r}: choose one of {', '.join(DETECTION_PROTOCOLS)}."
        )
    if protocol == ALL:
        if method != ALL:
            raise ValueError(f"The {ALL!r} protocol has one detector, {ALL!r}, not {method!r}.")
        if not pool:
            raise ValueError(f"The {ALL!r} protocol needs at least one manipulation method.")
        every = (ORIGINAL, *pool)
        return ProtocolSpec(ALL, ALL, every, every, every)
    if method not in pool:
        raise ValueError(f"Unknown method {method!r}: choose from {', '.join(pool)}.")
    if protocol == "known":
        seen = (ORIGINAL, method)
    else:
        seen = (ORIGINAL, *(m for m in pool if m != method))
    return ProtocolSpec(
        protocol=protocol,
        method=method,
        train_sources=seen,
        val_sources=seen,
        test_sources=(ORIGINAL, method),
    )


def select(data: LikelihoodSet, split: str, sources: tuple[str, ...]) -> LikelihoodSet:
    """The examples of `split` whose source (record `method`) is in `sources`."""
    return data.subset((data.splits == split) & np.isin(data.methods, sources))


def _require_both_classes(part: LikelihoodSet, split: str, spec: ProtocolSpec) -> None:
    sources = set(np.unique(part.methods).tolist())
    if ORIGINAL not in sources:
        raise EmptySplitError(
            f"{spec.protocol}/{spec.method}: the {split} split has no real (original) faces: "
            "check that prepare_faces and extract_likelihoods ran on the original videos."
        )
    if not sources - {ORIGINAL}:
        wanted = ", ".join(s for s in getattr(spec, f"{split}_sources") if s != ORIGINAL)
        raise EmptySplitError(
            f"{spec.protocol}/{spec.method}: the {split} split has no fake faces of {wanted}: "
            "that method is missing from the likelihood maps."
        )


def build_protocol_data(data: LikelihoodSet, spec: ProtocolSpec) -> ProtocolData:
    """Splits `data` into the training, selection and test sets of `spec`.

    Raises:
      EmptySplitError: a split lacks real or fake examples (e.g. a method missing).
    """
    parts = {}
    for split in SPLITS:
        parts[split] = select(data, split, getattr(spec, f"{split}_sources"))
        _require_both_classes(parts[split], split, spec)
    result = ProtocolData(spec=spec, **parts)
    check_training_data(result.train, spec, "train")
    check_training_data(result.val, spec, "val")
    return result


def check_training_data(data: LikelihoodSet, spec: ProtocolSpec, split: str) -> None:
    """Verifies that data given to the classifier for fitting or selection is allowed.

    Checks the record metadata of every example: split == `split` (train or val, never
    test), source in the spec's sources, and for leave-one-out no example of the
    held-out method; labels agree with sources (original = 0).

    Raises:
      ValueError: any of these fails (a bug, not a user error: it must never pass).
    """
    if split not in ("train", "val"):
        raise ValueError(f"Only the train and val splits may be used for fitting, not {split!r}.")
    bad_split = np.unique(data.splits[data.splits != split])
    if bad_split.size:
        raise ValueError(f"{split} data holds examples of the {list(bad_split)} split(s).")
    allowed = getattr(spec, f"{split}_sources")
    outside = np.unique(data.methods[~np.isin(data.methods, allowed)])
    if outside.size:
        raise ValueError(f"{split} data holds examples of {list(outside)}, not in {allowed}.")
    if spec.protocol == "loo" and np.any(data.methods == spec.method):
        raise ValueError(f"{split} data holds frames of the held-out method {spec.method}.")
    if np.any(data.labels != (data.methods != ORIGINAL)):
        raise ValueError(f"{split} data has labels that disagree with their source.")
