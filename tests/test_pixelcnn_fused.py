"""The fused forward pass (pixelcnn_pp.fused: each stream's concat_elu computed once
and shared, the auxiliary 1x1 layers applied to parts, the element-wise work in XLA
functions, packed dropout) equals the plain port of the reference network
(pixelcnn_pp.model, openai/pixel-cnn ``model_spec``) with the same weights, in value
and in gradient, and both hold the same variables."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from pixelcnn_pp import fused as F
from pixelcnn_pp import layers as L
from pixelcnn_pp import run_folder
from pixelcnn_pp.model import PixelCNNpp


def _fused_and_plain(x: tf.Tensor, nr_resnet: int, **kwargs) -> tuple[PixelCNNpp, PixelCNNpp]:
    """A fused model (data-dependent init on x) and a plain one with its weights."""
    keras.utils.set_random_seed(4)
    config = dict(nr_resnet=nr_resnet, nr_filters=8, nr_logistic_mix=2, **kwargs)
    fast = PixelCNNpp(**config, fused_kernels=True)
    fast.data_dependent_init(x)
    plain = PixelCNNpp(**config, fused_kernels=False)
    plain(x[:1])
    for a, b in zip(plain.variables, fast.variables, strict=True):
        a.assign(b)
    return fast, plain


@pytest.mark.parametrize("nr_resnet, dropout_rate", [(2, 0.5), (1, 0.0)])
def test_fused_forward_and_gradients_equal_the_plain_network(rng, nr_resnet, dropout_rate):
    x = tf.constant((rng.integers(0, 256, (2, 16, 16, 3)) / 127.5 - 1).astype(np.float32))
    fast, plain = _fused_and_plain(x, nr_resnet, dropout_rate=dropout_rate)
    weights = tf.constant(rng.normal(size=(2, 16, 16, 20)).astype(np.float32))
    # Dropout off: the two paths draw different masks. With rate 0 the training pass
    # (training=True) is compared too.
    training = dropout_rate == 0.0

    def value_and_grads(model):
        # A graph, as training runs it: TensorFlow's CPU rewrites apply.
        @tf.function
        def run():
            with tf.GradientTape() as tape:
                out = model(x, training=training)
                loss = tf.reduce_sum(out * weights)
            return out, tape.gradient(loss, model.trainable_variables)

        out, grads = run()
        return out.numpy(), [g.numpy() for g in grads]

    got, got_grads = value_and_grads(fast)
    want, want_grads = value_and_grads(plain)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for v, g, w in zip(plain.trainable_variables, got_grads, want_grads, strict=True):
        scale = np.abs(w).max() + 1e-6
        np.testing.assert_allclose(g, w, atol=1e-4 * scale, err_msg=v.path)


def test_both_paths_hold_the_same_variables_and_restore_each_others_checkpoints(rng, tmp_path):
    x = tf.constant((rng.integers(0, 256, (1, 8, 8, 3)) / 127.5 - 1).astype(np.float32))
    fast, plain = _fused_and_plain(x, 1, dropout_rate=0.5)
    assert fast.fused_kernels and not plain.fused_kernels
    # (The dropout generators' state variables are named by a global counter.)
    assert [(v.path, v.shape) for v in fast.weights] == [(v.path, v.shape) for v in plain.weights]
    assert len(fast.variables) == len(plain.variables)
    fast(x, training=True)  # moves the dropout generators on
    # As train_ubm saves (every variable, the generators' states among them) and as a
    # Keras model object saves itself (the weights).
    for holder, variables in (
        (run_folder.model_variables_tracker, lambda m: m.variables),
        (lambda m: m, lambda m: m.weights),
    ):
        prefix = tf.train.Checkpoint(model=holder(fast)).write(str(tmp_path / "fused"))
        keras.utils.set_random_seed(9)
        other = PixelCNNpp(nr_resnet=1, nr_filters=8, nr_logistic_mix=2, fused_kernels=False)
        other(x)
        tf.train.Checkpoint(model=holder(other)).read(prefix).assert_consumed()
        for a, b in zip(variables(other), variables(fast), strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_the_setting_selects_the_path():
    with F.use_fused_kernels(False):
        assert not PixelCNNpp(nr_resnet=1, nr_filters=4, nr_logistic_mix=1).fused_kernels
        assert PixelCNNpp(1, 4, 1, fused_kernels=True).fused_kernels
    assert F.fused_by_default() and PixelCNNpp(1, 4, 1).fused_kernels


def test_one_exp_concat_elu_equals_the_definition_with_its_gradient(rng):
    x = tf.constant(np.concatenate([rng.normal(size=(4, 31)) * 3, np.zeros((4, 1))], 1), tf.float32)
    dy = tf.constant(rng.normal(size=(4, 64)), tf.float32)
    got, want = [], []
    for fn, into in ((lambda v: F.concat_elu_fused(v, tf.float32), got), (L.concat_elu, want)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        into.extend([y.numpy(), tape.gradient(y, x, dy).numpy()])
    np.testing.assert_allclose(got[0], want[0], atol=2e-7)
    np.testing.assert_allclose(got[1], want[1], atol=1e-6)  # elu'(0) = 1, as EluGrad


def test_bfloat16_rounding_on_the_bits_equals_the_cast(rng):
    values = np.concatenate(
        [rng.normal(size=5000) * 10.0 ** rng.integers(-30, 30, 5000), [0.0, -0.0, np.inf, -np.inf]]
    ).astype(np.float32)
    x = tf.constant(values)
    got = tf.bitcast(F._float32_to_bfloat16(x), tf.uint16).numpy()
    want = tf.bitcast(tf.cast(x, tf.bfloat16), tf.uint16).numpy()
    np.testing.assert_array_equal(got, want)
    back = F._bfloat16_to_float32(tf.cast(x, tf.bfloat16)).numpy()
    np.testing.assert_array_equal(back, tf.cast(tf.cast(x, tf.bfloat16), tf.float32).numpy())


@pytest.mark.parametrize(
    "conv, rate", [(L.DownShiftedConv2D, 0.5), (L.DownRightShiftedConv2D, 0.3)]
)
def test_training_block_equals_the_plain_block_with_the_same_dropout_mask(rng, conv, rate):
    # In training the fused block applies its packed dropout mask in the compiled
    # concat_elu pass; the plain block's computation with the same draw of the seed
    # generator must agree in value and in every weight's gradient (a graph, as
    # training runs it).
    keras.utils.set_random_seed(5)
    f = 4
    x = tf.constant(rng.normal(size=(2, 8, 8, f)).astype(np.float32))
    a = tf.constant(rng.normal(size=(2, 8, 8, f)).astype(np.float32))
    block = L.GatedResnet(f, conv, use_aux=True, dropout_rate=rate)
    block(x, a, training=False)  # builds
    weights = tf.constant(rng.normal(size=(2, 8, 8, f)).astype(np.float32))
    dropout = F.PackedDropout(rate, block.dropout.seed_generator)
    state = block.dropout.seed_generator.state.numpy()

    def plain(x):
        c = block.conv1(L.concat_elu(x)) + block.aux(L.concat_elu(a))
        ce = L.concat_elu(c)
        keep = dropout.keep_mask(dropout.random_words(tf.shape(ce)), tf.shape(ce))
        ce = ce * tf.cast(keep, ce.dtype) * dropout.keep_scale
        p, q = tf.split(block.conv2(ce), 2, axis=-1)
        return x + p * tf.sigmoid(q)

    def fused(x):
        return F.gated_resnet(block, x, L.concat_elu(x), (L.concat_elu(a),), training=True)

    results = []
    for forward in (fused, plain):
        block.dropout.seed_generator.state.assign(state)

        @tf.function
        def step(forward=forward):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(forward(x) * weights)
            return loss, tape.gradient(loss, block.trainable_variables)

        loss, grads = step()
        results.append((loss.numpy(), [g.numpy() for g in grads]))
    (got_loss, got_grads), (want_loss, want_grads) = results
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
    for v, got, want in zip(block.trainable_variables, got_grads, want_grads, strict=True):
        scale = np.abs(want).max() + 1e-6
        np.testing.assert_allclose(got, want, atol=1e-4 * scale, err_msg=v.path)
    # The mask was live: the same block without dropout gives another loss.
    no_drop = tf.reduce_sum(block(x, a, training=False) * weights)
    assert abs(float(no_drop) - float(got_loss)) > 1e-3


@pytest.mark.parametrize("rate", [0.5, 0.25, 0.3])
def test_packed_dropout_drops_the_right_fraction(rate):
    dropout = F.PackedDropout(rate, keras.random.SeedGenerator(1))
    assert dropout.bits_per_element == {0.5: 1, 0.25: 8, 0.3: 16}[rate]
    x = tf.ones([8, 32, 32, 16])
    first = dropout(x).numpy()
    second = dropout(x).numpy()
    np.testing.assert_allclose(np.unique(first), [0.0, 1.0 / (1.0 - rate)], rtol=1e-6)
    assert abs((first == 0).mean() - rate) < 0.01
    assert (first != second).mean() > 0.1  # a fresh mask on every call


@pytest.mark.parametrize("rate", [0.5, 0.3])
def test_fused_training_pass_drops_the_rate_of_each_blocks_middle(rng, rate, monkeypatch):
    # Counted through the fused model itself: zeros of the compiled concat_elu pass's
    # output, recorded from the blocks of a training forward pass. (After the
    # data-dependent init no bias is zero, so only dropout makes exact zeros.)
    x = tf.constant((rng.integers(0, 256, (4, 16, 16, 3)) / 127.5 - 1).astype(np.float32))
    model = PixelCNNpp(nr_resnet=1, nr_filters=16, nr_logistic_mix=2, dropout_rate=rate)
    model.data_dependent_init(x)
    seen = []
    original = F.block_concat_elu

    def recording(*args):
        out = original(*args)
        seen.append(out.numpy())
        return out

    monkeypatch.setattr(F, "block_concat_elu", recording)
    model(x, training=True)
    assert len(seen) == 2 * (3 + 1 + 2 + 2)  # every gated resnet once
    dropped = np.mean([(s == 0).mean() for s in seen])
    assert abs(dropped - rate) < 0.01


def test_dropout_mask_takes_its_levels_from_the_word_stream_in_order():
    words = tf.constant([0b1011, 0x80000000, 0x0000FF01], tf.uint32)
    # One bit an element (rate 0.5): bit k of word w is element 32 w + k.
    mask = F.unpack_keep_mask(words, tf.constant([2, 40]), bits=1, keep_threshold=1).numpy()
    flat = mask.reshape(-1)
    assert flat[:4].tolist() == [True, True, False, True] and not flat[4:32].any()
    assert not flat[32:63].any() and flat[63] and flat[64] and not flat[65:72].any()
    # 8-bit levels (little-endian bytes of each word), kept from the threshold up.
    mask = F.unpack_keep_mask(words, tf.constant([12]), bits=8, keep_threshold=2).numpy()
    assert mask.tolist() == [True] + [False] * 6 + [True] + [False, True] + [False] * 2
