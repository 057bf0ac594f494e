"""Tests of the PixelCNN++ network (pixelcnn_pp.model, pixelcnn_pp.layers).

Causality by gradients, the reference code's parameter count, data-dependent
initialisation, save/reload equality, mixed precision and input validation. A built
model runs the fused forward pass unless built with ``fused_kernels=False``; the
causality and dropout tests run both.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from pixelcnn_pp import layers as L
from pixelcnn_pp.distributions import pixel_log_likelihood
from pixelcnn_pp.model import PixelCNNpp


def _images(rng, batch, height, width):
    return (rng.integers(0, 256, (batch, height, width, 3)) / 127.5 - 1.0).astype(np.float32)


def _dependency_matrix(model, height, width, rng):
    """dep[i, j]: output pixel i (raster order) has a non-zero gradient w.r.t. pixel j.

    Batch element k holds the loss of output pixel k only, so one backward pass gives
    the gradients of all H*W output pixels (batch elements do not interact).
    """
    n = height * width
    x = tf.Variable(_images(rng, n, height, width))
    weights = rng.normal(size=(n, height, width, 1)).astype(np.float32)
    select = np.zeros((n, height, width, 1), np.float32)
    select[np.arange(n), np.arange(n) // width, np.arange(n) % width] = 1.0
    with tf.GradientTape() as tape:
        out = model(x, training=False)
        loss = tf.reduce_sum(out * weights * select)
    grad = tape.gradient(loss, x).numpy()  # [n, H, W, 3]
    return np.abs(grad).sum(axis=-1).reshape(n, n) > 0


@pytest.mark.slow
@pytest.mark.parametrize("fused_kernels", [True, False])
@pytest.mark.parametrize("height,width", [(8, 8), (8, 12)])
def test_fresh_model_is_causal(rng, height, width, fused_kernels):
    # Freshly built, untrained, no data-dependent init: causality must hold from the start.
    model = PixelCNNpp(
        nr_resnet=1, nr_filters=8, nr_logistic_mix=2, dropout_rate=0.0, fused_kernels=fused_kernels
    )
    model(_images(rng, 1, height, width))  # builds: the next call takes the chosen path
    dep = _dependency_matrix(model, height, width, rng)
    n = height * width
    earlier = np.tril(np.ones((n, n), bool), k=-1)  # j < i in raster order
    # No output pixel sees itself (any channel) or any later pixel.
    assert not np.any(dep & ~earlier), np.argwhere(dep & ~earlier)[:5]
    assert not dep[0].any()  # pixel (0, 0) depends on nothing

    def index(row, col):
        return row * width + col

    for row, col in [(0, 1), (0, width - 1), (1, 0), (2, 3), (height - 1, width - 1)]:
        i = index(row, col)
        if col > 0:
            assert dep[i, index(row, col - 1)], (row, col)  # left neighbour
        if row > 0:
            assert dep[i, index(row - 1, col)], (row, col)  # directly above
            if col + 1 < width:
                assert dep[i, index(row - 1, col + 1)], (row, col)  # above right: no blind spot
    # Deep pixels see every earlier row completely.
    last = dep[n - 1].reshape(height, width)
    assert last[: height - 1].all()


@pytest.mark.parametrize("fused_kernels", [True, False])
def test_output_shape_and_dtype(rng, fused_kernels):
    model = PixelCNNpp(
        nr_resnet=1, nr_filters=8, nr_logistic_mix=3, dropout_rate=0.5, fused_kernels=fused_kernels
    )
    x = _images(rng, 2, 12, 8)
    model(x[:1])  # builds
    out = model(x)
    assert out.shape == (2, 12, 8, 30)
    assert out.dtype == tf.float32
    # Dropout is active only in training.
    np.testing.assert_array_equal(model(x, training=False).numpy(), out.numpy())
    assert not np.allclose(model(x, training=True).numpy(), out.numpy())


def reference_parameter_count(nr_resnet, nr_filters, nr_mix, colours=3):
    """Parameters of the reference TF1 model_spec, layer by layer (V, g and b counted)."""
    f = nr_filters

    def conv(kh, kw, c_in, c_out):
        return kh * kw * c_in * c_out + 2 * c_out  # V + g + b

    def nin(c_in, c_out):
        return c_in * c_out + 2 * c_out

    def gated_resnet(kh, kw, aux_channels):
        n = conv(kh, kw, 2 * f, f) + conv(kh, kw, 2 * f, 2 * f)  # concat_elu doubles inputs
        return n + (nin(2 * aux_channels, f) if aux_channels else 0)

    c_in = colours + 1  # the channel of ones
    total = conv(2, 3, c_in, f) + conv(1, 3, c_in, f) + conv(2, 1, c_in, f)
    total += 3 * nr_resnet * (gated_resnet(2, 3, 0) + gated_resnet(2, 2, f))  # up pass
    total += 2 * (conv(2, 3, f, f) + conv(2, 2, f, f))  # strided downsampling
    down_pairs = nr_resnet + 2 * (nr_resnet + 1)
    total += down_pairs * (gated_resnet(2, 3, f) + gated_resnet(2, 2, 2 * f))  # down pass
    total += 2 * (conv(2, 3, f, f) + conv(2, 2, f, f))  # transposed upsampling
    return total + nin(f, 10 * nr_mix)


@pytest.mark.parametrize(
    "nr_resnet,nr_filters,expected",
    [(1, 32, 578_760), pytest.param(5, 160, 53_659_080, marks=pytest.mark.slow)],
)
def test_parameter_count_matches_reference_code(nr_resnet, nr_filters, expected):
    assert reference_parameter_count(nr_resnet, nr_filters, 10) == expected
    model = PixelCNNpp(nr_resnet=nr_resnet, nr_filters=nr_filters, nr_logistic_mix=10)
    model(np.zeros((1, 4, 4, 3), np.float32))
    assert model.count_params() == expected
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == expected
    assert {w.path.split("/")[-1] for w in model.weights} == {"V", "g", "b"}
    assert all(w.dtype == "float32" for w in model.weights)


def test_layer_data_dependent_init_normalises_pre_activations(rng):
    x = tf.constant(rng.normal(3.0, 5.0, (4, 8, 8, 6)).astype(np.float32))
    layer = L.DownShiftedConv2D(5)
    layer(x)  # build with the default init
    before = layer(x).numpy()
    assert np.abs(before.std(axis=(0, 1, 2)) - 1.0).max() > 0.1  # not normalised yet
    with L.data_dependent_init_scope():
        in_pass = layer(x).numpy()
    after = layer(x).numpy()
    np.testing.assert_allclose(in_pass, after, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(after.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(after.std(axis=(0, 1, 2)), 1.0, rtol=1e-3)

    small = L.WNDense(7, init_scale=0.1)
    with L.data_dependent_init_scope():
        small(x)
    out = small(x).numpy()
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 0.1, rtol=1e-3)


def _snapshot(model):
    return [w.numpy().copy() for w in model.weights]


def test_model_data_dependent_init(rng):
    model = PixelCNNpp(nr_resnet=1, nr_filters=8, nr_logistic_mix=2, dropout_rate=0.5)
    x = _images(rng, 4, 8, 8)
    model(x)
    fresh = _snapshot(model)
    init_out = model.data_dependent_init(x, training=False).numpy()
    initialised = _snapshot(model)
    changed = [not np.array_equal(a, b) for a, b in zip(fresh, initialised, strict=True)]
    names = [w.path.split("/")[-1] for w in model.weights]
    # Every g and b moved; V stays as drawn.
    assert all(c for c, n in zip(changed, names, strict=True) if n in ("g", "b"))
    assert not any(c for c, n in zip(changed, names, strict=True) if n == "V")
    # The init pass recomputed each layer's output: a normal pass reproduces it.
    np.testing.assert_allclose(model(x, training=False).numpy(), init_out, rtol=1e-4, atol=1e-4)
    # Every layer's pre-activation is now normalised on that batch (mean 0, std
    # init_scale), so re-running the initialisation leaves g and b (almost) unchanged.
    model.data_dependent_init(x, training=False, force=True)
    for a, b, name in zip(initialised, _snapshot(model), names, strict=True):
        if name == "g":
            np.testing.assert_allclose(b, a, rtol=2e-3)
        elif name == "b":
            np.testing.assert_allclose(b, a, atol=2e-3 * max(1.0, np.abs(a).max()))
    # A second call without force is a no-op.
    before = _snapshot(model)
    model.data_dependent_init(_images(rng, 4, 8, 8))
    for a, b in zip(before, _snapshot(model), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_save_and_reload_give_identical_maps(rng, tmp_path):
    config = dict(nr_resnet=1, nr_filters=8, nr_logistic_mix=3, dropout_rate=0.5)
    x = _images(rng, 2, 8, 8)
    model = PixelCNNpp(**config)
    model.data_dependent_init(x)
    expected = pixel_log_likelihood(x, model(x, training=False)).numpy()

    path = str(tmp_path / "ubm.weights.h5")
    model.save_weights(path)
    reloaded = PixelCNNpp(**config)
    reloaded(x[:1])
    reloaded.load_weights(path)
    np.testing.assert_array_equal(pixel_log_likelihood(x, reloaded(x)).numpy(), expected)

    prefix = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    restored = PixelCNNpp(**config)
    restored(x[:1])
    tf.train.Checkpoint(model=restored).read(prefix).assert_consumed()
    np.testing.assert_array_equal(pixel_log_likelihood(x, restored(x)).numpy(), expected)


@pytest.mark.slow
def test_mixed_precision_keeps_float32_variables_and_output(rng):
    model = PixelCNNpp(1, 8, 2, 0.0, dtype="mixed_bfloat16")
    x = _images(rng, 2, 8, 8)
    out = model(x)
    assert out.dtype == tf.float32
    assert all(w.dtype == "float32" for w in model.weights)
    assert model.out_nin.compute_dtype == "bfloat16"
    reference = PixelCNNpp(1, 8, 2, 0.0)
    reference(x)
    reference.set_weights(model.get_weights())
    np.testing.assert_allclose(out.numpy(), reference(x).numpy(), atol=0.1)


@pytest.mark.parametrize(
    "x,message",
    [
        (np.zeros((1, 8, 8, 3), np.uint8), "expects float images"),
        (np.zeros((1, 8, 8, 4), np.float32), "shape \\[batch, height, width, 3\\]"),
        (np.zeros((8, 8, 3), np.float32), "shape \\[batch, height, width, 3\\]"),
        (np.zeros((1, 10, 8, 3), np.float32), "height divisible by 4"),
        (np.zeros((1, 8, 6, 3), np.float32), "width divisible by 4"),
    ],
)
def test_bad_inputs_raise_clear_errors(x, message):
    model = PixelCNNpp(nr_resnet=1, nr_filters=4, nr_logistic_mix=1)
    with pytest.raises(ValueError, match=message):
        model(x)


def test_bad_hyper_parameters_raise_clear_errors():
    with pytest.raises(ValueError, match="nr_filters must be a positive integer"):
        PixelCNNpp(nr_filters=0)
    with pytest.raises(ValueError, match="dropout_rate must be in"):
        PixelCNNpp(dropout_rate=1.0)
