"""The streamed path of the detection stage: one statistics pass, maps streamed.

The scan's counts and moments equal those of the maps loaded into memory, the stream
yields exactly the maps of its folders, a tree of mixed map sizes fails before any
training with nothing written, and a re-run gives the same predictions.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd
import pytest
from likelihood_helpers import read_tree, write_likelihood_tree

from classifier import data as data_lib
from classifier.config import DetectorConfig
from data_prep.methods import ORIGINAL
from experiments.configs import load_config
from experiments.pipeline import detection
from experiments.pipeline.workdir import Workdir

CONFIG = DetectorConfig(epochs=1, batch_size=8, bootstrap_samples=10)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> str:
    return write_likelihood_tree(
        str(tmp_path_factory.mktemp("lik") / "likelihoods"),
        sources=(ORIGINAL, "Deepfakes", "FaceSwap"),
        split_videos={"train": 3, "val": 2, "test": 2},
        frames=2,
    )


def test_scan_matches_the_maps_in_memory(tree):
    scans = data_lib.scan_folders(tree)
    loaded = read_tree(tree)
    for (split, source), scan in scans.items():
        part = loaded.subset((loaded.splits == split) & (loaded.methods == source))
        assert scan.count == len(part) > 0
        assert scan.composition() == part.composition()
        np.testing.assert_array_equal(scan.label_counts, np.bincount(part.labels, minlength=2))
    train = data_lib.combine_scans(s for (split, _), s in scans.items() if split == "train")
    maps = loaded.maps[loaded.splits == "train"].astype(np.float64)
    assert np.isclose(train.mean, maps.mean(), rtol=1e-12)
    assert np.isclose(train.std, maps.std(), rtol=1e-9)
    assert train.kinds == {
        ("train", ORIGINAL, 0),
        ("train", "Deepfakes", 1),
        ("train", "FaceSwap", 1),
    }


def test_stream_yields_the_maps_of_its_folders(tree):
    loaded = read_tree(tree)
    expected = loaded.subset(
        (loaded.splits == "val") & np.isin(loaded.methods, (ORIGINAL, "FaceSwap"))
    )
    ordered = list(data_lib.stream_maps(tree, "val", (ORIGINAL, "FaceSwap")).as_numpy_iterator())
    # Unshuffled: folder by folder in load order, the very same maps and metadata.
    np.testing.assert_array_equal(np.stack([e["map"] for e in ordered]), expected.maps)
    assert [e["video"].decode() for e in ordered] == expected.videos.tolist()
    shuffled = list(data_lib.stream_maps(tree, "val", (ORIGINAL, "FaceSwap"), shuffle_seed=3))
    assert sorted(e["map"].numpy().tobytes() for e in shuffled) == sorted(
        m.tobytes() for m in expected.maps
    )


def test_mixed_map_sizes_fail_before_training_and_write_nothing(tmp_path):
    root = str(tmp_path / "likelihoods")
    for split in ("train", "val", "test"):
        write_likelihood_tree(root, sources=(ORIGINAL,), split_videos={split: 1}, frames=1)
    write_likelihood_tree(
        root, sources=("Deepfakes",), split_videos={"train": 1, "val": 1}, frames=1
    )
    write_likelihood_tree(root, sources=("Deepfakes",), split_videos={"test": 1}, frames=1, size=32)
    config = dataclasses.replace(load_config("smoke"), name="test", detector=CONFIG)
    workdir = tmp_path / "work"
    with pytest.raises(ValueError, match=r"test/Deepfakes.*32.*expects 64x64"):
        detection.run_protocol(config, Workdir(str(workdir)), "known", likelihoods_dir=root)
    assert not os.path.exists(workdir / "detection")


@pytest.mark.slow
def test_streamed_run_is_reproducible(tree, tmp_path):
    config = dataclasses.replace(load_config("smoke"), name="test", detector=CONFIG)
    frames = []
    for run in ("a", "b"):
        detection.run_protocol(
            config, Workdir(str(tmp_path / run)), "known", ["Deepfakes"], likelihoods_dir=tree
        )
        path = tmp_path / run / "detection" / "known" / "Deepfakes" / detection.PREDICTIONS_FILE
        frames.append(pd.read_csv(path, dtype={"video": str}))
    assert list(frames[0].columns) == list(detection.PREDICTION_COLUMNS)
    # val then test rows, every frame once: 2 sources x (2 + 2) videos x 2 frames.
    assert frames[0]["split"].tolist() == ["val"] * 8 + ["test"] * 8
    pd.testing.assert_frame_equal(frames[0], frames[1])
