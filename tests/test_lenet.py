"""The LeNet-style detector: the paper's 933,442 parameters, shapes, saved standardisation."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from likelihood_helpers import train_on_tree, write_masked_shard

from classifier import lenet
from classifier.config import DetectorConfig
from classifier.data import LikelihoodSet
from data_prep.methods import ORIGINAL


def test_parameter_count_matches_the_paper():
    model = lenet.build_lenet()
    assert model.count_params() == lenet.LENET_PARAMETERS == 933_442
    per_layer = {layer.name: layer.count_params() for layer in model.layers}
    assert per_layer["block1_conv"] == 100 and per_layer["block1_bn"] == 40
    assert per_layer["block2_conv"] == 3_640 and per_layer["block3_conv"] == 43_320
    assert per_layer["fc1_dense"] == 864_200 and per_layer["fc2_dense"] == 20_100
    assert per_layer["fc3"] == 202
    assert per_layer["standardize"] == 0


def test_output_shape_and_probabilities(rng):
    model = lenet.build_lenet((64, 64, 1), num_classes=2)
    assert model.get_layer("block3_relu").output.shape[1:] == (6, 6, 120)
    probs = model.predict(rng.normal(-4, 1, (5, 64, 64, 1)).astype(np.float32), verbose=0)
    assert probs.shape == (5, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def _set(rng, root: str, split: str, n: int, offset: float) -> LikelihoodSet:
    """n maps of one split, written as likelihood shards (one video each) under root."""
    labels = np.arange(n) % 2
    maps = rng.normal(offset, 2.0, (n, 64, 64)).astype(np.float32)
    maps[labels == 1, 20:40, 20:40] -= 3.0
    for i, (loglik, label) in enumerate(zip(maps, labels, strict=True)):
        source = "Deepfakes" if label else ORIGINAL
        write_masked_shard(root, split, source, f"{i:03d}", [loglik], [None])
    return LikelihoodSet(
        maps=maps,
        labels=labels.astype(np.int64),
        methods=np.where(labels == 1, "Deepfakes", ORIGINAL),
        videos=np.array([f"{i:03d}" for i in range(n)]),
        frames=np.zeros(n, np.int64),
        splits=np.full(n, split),
        image_loglik=maps.sum(axis=(1, 2)),
    )


@pytest.mark.slow
def test_standardisation_is_fitted_on_training_maps_and_saved(tmp_path, rng):
    root = str(tmp_path / "likelihoods")
    train = _set(rng, root, "train", 16, offset=-4.0)
    val = _set(rng, root, "val", 8, offset=-9.0)  # a different offset: must not leak in
    config = DetectorConfig(epochs=1, batch_size=8, bootstrap_samples=10)
    trained = train_on_tree(root, (ORIGINAL, "Deepfakes"), config)
    layer = trained.model.get_layer("standardize")
    assert np.isclose(layer.mean, float(np.mean(train.maps, dtype=np.float64)))
    assert np.isclose(layer.std, float(np.std(train.maps, dtype=np.float64)))
    assert abs(layer.mean - (-4.0)) < 0.2  # the training offset, not the val one

    path = str(tmp_path / "model.keras")
    trained.model.save(path)
    reloaded = keras.models.load_model(path)
    assert reloaded.get_layer("standardize").mean == layer.mean
    assert reloaded.get_layer("standardize").std == layer.std
    x = val.maps[..., None]
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), trained.model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    assert reloaded.count_params() == 933_442
