"""The protocols: leave-one-out never shows the classifier a held-out frame, the test
split never reaches fitting or epoch selection, and missing data is reported clearly.

The checks spy on `keras.Model.fit` and identify every map handed to it by its
content, so they hold for the data the classifier actually sees.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from likelihood_helpers import read_tree, train_on_tree, write_likelihood_tree

from classifier import data as data_lib
from classifier import protocols, training
from classifier.config import DetectorConfig
from data_prep.methods import ORIGINAL
from data_prep.methods import PAPER_METHODS as METHODS
from experiments.configs import base as config_base
from experiments.configs import load_config
from experiments.pipeline import detection
from experiments.pipeline.workdir import Workdir

CONFIG = DetectorConfig(epochs=1, batch_size=16, bootstrap_samples=20)


def _config(detector: DetectorConfig = CONFIG):
    """The smoke experiment configuration named "test", with these detector settings."""
    return dataclasses.replace(load_config("smoke"), name="test", detector=detector)


def _run(tree: str, workdir, protocol: str, methods=None, detector: DetectorConfig = CONFIG):
    return detection.run_protocol(
        _config(detector), Workdir(str(workdir)), protocol, methods=methods, likelihoods_dir=tree
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> str:
    return write_likelihood_tree(
        str(tmp_path_factory.mktemp("lik") / "likelihoods"),
        split_videos={"train": 3, "val": 2, "test": 2},
        frames=2,
    )


def _maps_of(x) -> np.ndarray:
    """The maps [N, H, W, 1] of an array, or of every batch of a tf.data stream."""
    if isinstance(x, tf.data.Dataset):
        return np.concatenate([np.asarray(batch[0]) for batch in x])
    if isinstance(x, (tuple, list)):
        return np.asarray(x[0])
    return np.asarray(x)


@pytest.fixture
def fit_spy(monkeypatch):
    """Records (event, maps) for every fit and predict call, in order.

    A streamed input is read through once more by the spy: what it yields is what
    the classifier is given.
    """
    calls = []
    original_fit = keras.Model.fit
    original_predict, original_batch = keras.Model.predict, keras.Model.predict_on_batch

    def fit(self, x=None, y=None, *args, validation_data=None, **kwargs):
        calls.append(("fit_x", _maps_of(x)))
        if validation_data is not None:
            calls.append(("fit_validation", _maps_of(validation_data)))
        return original_fit(self, x, y, *args, validation_data=validation_data, **kwargs)

    def predict(self, x, *args, **kwargs):
        calls.append(("predict", np.asarray(x)))
        return original_predict(self, x, *args, **kwargs)

    def predict_on_batch(self, x):
        calls.append(("predict", np.asarray(x)))
        return original_batch(self, x)

    monkeypatch.setattr(keras.Model, "fit", fit)
    monkeypatch.setattr(keras.Model, "predict", predict)
    monkeypatch.setattr(keras.Model, "predict_on_batch", predict_on_batch)
    return calls


def _index(data: data_lib.LikelihoodSet) -> dict[bytes, tuple[str, str]]:
    """Map content -> (split, method) of every example on disk."""
    index = {
        m.tobytes(): (s, src)
        for m, s, src in zip(data.maps, data.splits, data.methods, strict=True)
    }
    assert len(index) == len(data), "test maps must be unique"
    return index


def _seen(calls, event: str, index) -> set[tuple[str, str]]:
    seen = set()
    for name, x in calls:
        if name == event:
            for m in x[..., 0]:
                seen.add(index[np.ascontiguousarray(m, np.float32).tobytes()])
    return seen


def test_protocol_specs():
    for method in METHODS:
        loo = protocols.protocol_spec("loo", method, METHODS)
        assert method not in loo.train_sources and method not in loo.val_sources
        assert set(loo.train_sources) == {ORIGINAL, *METHODS} - {method}
        assert loo.test_sources == (ORIGINAL, method)
        known = protocols.protocol_spec("known", method, METHODS)
        assert known.train_sources == known.val_sources == known.test_sources == (ORIGINAL, method)
    with pytest.raises(ValueError, match="Unknown protocol"):
        protocols.protocol_spec("cross", "Deepfakes", METHODS)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", protocols.PROTOCOLS)
def test_classifier_sees_only_allowed_frames(tree, tmp_path, fit_spy, protocol):
    all_data = read_tree(tree)
    index = _index(all_data)
    summary = _run(tree, tmp_path, protocol, methods=["Face2Face"])
    assert summary["methods"]["Face2Face"]["status"] == "done"

    trained_on = _seen(fit_spy, "fit_x", index)
    selected_on = _seen(fit_spy, "fit_validation", index)
    allowed = (
        {ORIGINAL, "Face2Face"} if protocol == "known" else {ORIGINAL, *METHODS} - {"Face2Face"}
    )
    assert trained_on == {("train", s) for s in allowed}
    assert selected_on == {("val", s) for s in allowed}
    if protocol == "loo":
        assert not any(src == "Face2Face" for _, src in trained_on | selected_on)
    # Test maps are only ever predicted, and only after fitting is over.
    events = [name for name, _ in fit_spy]
    last_fit = max(i for i, e in enumerate(events) if e.startswith("fit"))
    test_predicts = [
        i
        for i, (name, x) in enumerate(fit_spy)
        if name == "predict"
        and any(index[np.ascontiguousarray(m).tobytes()][0] == "test" for m in x[..., 0])
    ]
    assert test_predicts and min(test_predicts) > last_fit

    with open(tmp_path / "detection" / protocol / "Face2Face" / "metrics.json") as f:
        report = json.load(f)
    assert report["training"]["test_method_seen_in_training"] is (protocol == "known")
    assert set(report["training"]["composition"]["train"]) == allowed
    assert set(report["test"]["counts"]) >= {"frames", "videos", "real_videos", "fake_videos"}
    assert report["test"]["counts"]["videos"] == 4


def test_training_refuses_test_data_by_construction(tree):
    assert "test" not in inspect.signature(training.train_streamed).parameters
    data = read_tree(tree, sources=(ORIGINAL, "Deepfakes"))
    train = protocols.select(data, "train", (ORIGINAL, "Deepfakes"))
    with pytest.raises(ValueError, match="test"):
        # test maps passed as "val"
        train_on_tree(tree, (ORIGINAL, "Deepfakes"), CONFIG, val_split="test")
    spec = protocols.protocol_spec("loo", "Deepfakes", METHODS)
    with pytest.raises(ValueError, match="held-out method Deepfakes|not in"):
        protocols.check_training_data(train, spec, "train")


@pytest.mark.slow
def test_missing_method_is_recorded_and_others_run(tmp_path):
    tree = write_likelihood_tree(
        str(tmp_path / "likelihoods"),
        sources=(ORIGINAL, "Deepfakes", "FaceSwap"),
        split_videos={"train": 2, "val": 1, "test": 1},
        frames=2,
    )
    summary = _run(tree, tmp_path, "known", methods=["Deepfakes", "NeuralTextures"])
    assert summary["methods"]["Deepfakes"]["status"] == "done"
    missing = summary["methods"]["NeuralTextures"]
    assert missing["status"] == "missing" and "NeuralTextures" in missing["reason"]
    assert not os.path.exists(tmp_path / "detection" / "known" / "NeuralTextures" / "metrics.json")
    # A re-run skips the finished method (its metrics.json is kept untouched).
    path = tmp_path / "detection" / "known" / "Deepfakes" / "metrics.json"
    before = os.stat(path).st_mtime_ns
    _run(tree, tmp_path, "known", methods=["Deepfakes"])
    assert os.stat(path).st_mtime_ns == before
    # Other settings would mix two trainings in one table: refused.
    other = dataclasses.replace(CONFIG, epochs=2)
    with pytest.raises(ValueError, match="other settings"):
        _run(tree, tmp_path, "known", methods=["FaceSwap"], detector=other)


def test_empty_val_split_is_a_clear_error(tmp_path):
    tree = write_likelihood_tree(
        str(tmp_path / "likelihoods"),
        sources=(ORIGINAL, "Deepfakes"),
        split_videos={"train": 2, "test": 1},
        frames=1,
    )
    data = read_tree(tree)
    with pytest.raises(protocols.EmptySplitError, match="val split has no real"):
        protocols.build_protocol_data(data, protocols.protocol_spec("known", "Deepfakes", METHODS))


def test_mismatched_map_sizes_are_a_clear_error(tmp_path):
    root = str(tmp_path / "likelihoods")
    write_likelihood_tree(root, sources=(ORIGINAL,), split_videos={"train": 1}, frames=1)
    write_likelihood_tree(
        root, sources=("Deepfakes",), split_videos={"train": 1}, frames=1, size=32
    )
    with pytest.raises(ValueError, match=r"Deepfakes.*32.*expects 64x64"):
        data_lib.scan_folders(root)


def test_no_likelihoods_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run extract_likelihoods first"):
        data_lib.scan_folders(str(tmp_path / "nothing"))


@pytest.mark.slow
def test_baselines_are_trained_for_the_protocols_named(tree, tmp_path):
    detector = dataclasses.replace(
        CONFIG, inputs=("maps", "pixels_grey"), baseline_protocols=("known",)
    )
    for protocol in ("known", "loo"):
        _run(tree, tmp_path, protocol, methods=["Face2Face"], detector=detector)
    workdir = Workdir(str(tmp_path))
    assert detection.finished_methods(workdir, "known", "pixels_grey") == ("Face2Face",)
    assert detection.finished_methods(workdir, "loo") == ("Face2Face",)
    assert not os.path.exists(workdir.protocol("loo", "pixels_grey"))


def test_baseline_protocols_must_be_tables():
    bad = _config(dataclasses.replace(CONFIG, baseline_protocols=("all",)))
    with pytest.raises(ValueError, match="baseline_protocols: all is no table's protocol"):
        config_base.validate(bad)


def test_leave_one_out_of_one_method_is_skipped_by_the_binary(tmp_path):
    """A dataset whose fakes name no method (one fake source): run_detection --protocol=loo
    says why it is skipped and succeeds, so make reproduce goes on to the tables."""
    tree = write_likelihood_tree(
        str(tmp_path / "likelihoods"),
        sources=(ORIGINAL, "Deepfakes"),
        split_videos={"train": 1, "val": 1, "test": 1},
        frames=1,
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.run_detection",
            "--config=smoke",
            f"--workdir={tmp_path / 'work'}",
            f"--likelihoods_dir={tree}",
            "--protocol=loo",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loo: skipped: leave-one-out needs two methods or more" in result.stderr
    summary = json.loads((tmp_path / "work" / "detection" / "loo" / "summary.json").read_text())
    assert "skipped" in summary
