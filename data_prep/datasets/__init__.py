"""Datasets as adapters: each lists its videos with source, label, split and paths.

`ADAPTERS` is the one registry: FF++ (`ffpp`), the generated miniature FF++
(`generated`), Celeb-DF v2 (`celebdf`), DFDC (`dfdc`), a generic folder or CSV of
real and fake files (`folder`) and datasets of face crops (`crops`). A new dataset is
one module defining a class with `name`, `root`, `splits_dir` and `list_videos`
(`base.VideoDataset`), added here.
"""

from __future__ import annotations

from collections.abc import Callable

from data_prep.datasets.base import DatasetListing, DatasetProblem, VideoDataset, VideoEntry
from data_prep.datasets.celebdf import CelebDFDataset
from data_prep.datasets.crops import CropsDataset
from data_prep.datasets.dfdc import DFDCDataset
from data_prep.datasets.ffpp import FFPPDataset
from data_prep.datasets.folder import FolderDataset
from data_prep.datasets.generated import GeneratedDataset

__all__ = [
    "ADAPTERS",
    "CelebDFDataset",
    "CropsDataset",
    "DFDCDataset",
    "DatasetListing",
    "DatasetProblem",
    "FFPPDataset",
    "FolderDataset",
    "GeneratedDataset",
    "VideoDataset",
    "VideoEntry",
    "open_dataset",
]

ADAPTERS: dict[str, Callable[..., VideoDataset]] = {
    FFPPDataset.name: FFPPDataset,
    GeneratedDataset.name: GeneratedDataset,
    CelebDFDataset.name: CelebDFDataset,
    DFDCDataset.name: DFDCDataset,
    FolderDataset.name: FolderDataset,
    CropsDataset.name: CropsDataset,
}


def open_dataset(name: str, root: str, splits_dir: str | None = None) -> VideoDataset:
    """The adapter `name` on the dataset in `root`.

    Args:
      name: a key of ADAPTERS ("ffpp", "generated", "celebdf", "dfdc", "folder", "crops").
      root: the dataset's folder.
      splits_dir: the split folder, for datasets that take one (FF++ requires it; the
        others bring their own splits and refuse one).

    Raises:
      ValueError: unknown name, or options the dataset does not take or lacks.
    """
    if name not in ADAPTERS:
        raise ValueError(f"Unknown dataset {name!r}: use one of {', '.join(ADAPTERS)}.")
    return ADAPTERS[name](root, splits_dir=splits_dir)
