"""The model's fused forward (each stream's concat_elu computed once and shared, the
auxiliary 1x1 layers applied to parts, the element-wise work in XLA functions) equals
a plain transcription of the reference network (openai/pixel-cnn ``model_spec``) on the
same layers, in value and in gradient."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from pixelcnn_pp import layers as L
from pixelcnn_pp.model import PixelCNNpp


def _plain_block(block: L.GatedResnet, x: tf.Tensor, a: tf.Tensor | None = None) -> tf.Tensor:
    c = block.conv1(L.concat_elu(x))
    if a is not None:
        c = c + block.aux(L.concat_elu(a))
    p, q = tf.split(block.conv2(L.concat_elu(c)), 2, axis=-1)
    return x + p * tf.sigmoid(q)


def _plain_forward(m: PixelCNNpp, x: tf.Tensor) -> tf.Tensor:
    """The reference network's forward pass (dropout off) with m's layers."""
    x = tf.concat([x, tf.ones_like(x[..., :1])], axis=-1)
    u_list = [L.down_shift(m.u_in(x))]
    ul_list = [L.down_shift(m.ul_in_up(x)) + L.right_shift(m.ul_in_left(x))]
    for level in range(3):
        for i in range(m.nr_resnet):
            u_list.append(_plain_block(getattr(m, f"up{level}_u{i}"), u_list[-1]))
            ul_list.append(_plain_block(getattr(m, f"up{level}_ul{i}"), ul_list[-1], u_list[-1]))
        if level < 2:
            u_list.append(getattr(m, f"up{level}_u_down")(u_list[-1]))
            ul_list.append(getattr(m, f"up{level}_ul_down")(ul_list[-1]))
    u, ul = u_list.pop(), ul_list.pop()
    for level, pairs in enumerate((m.nr_resnet, m.nr_resnet + 1, m.nr_resnet + 1)):
        if level > 0:
            u = getattr(m, f"dn{level}_u_up")(u)
            ul = getattr(m, f"dn{level}_ul_up")(ul)
        for i in range(pairs):
            u = _plain_block(getattr(m, f"dn{level}_u{i}"), u, u_list.pop())
            aux = tf.concat([u, ul_list.pop()], axis=-1)
            ul = _plain_block(getattr(m, f"dn{level}_ul{i}"), ul, aux)
    assert not u_list and not ul_list
    return m.out_nin(tf.nn.elu(ul))


@pytest.mark.parametrize("nr_resnet", [2])
def test_fused_forward_and_gradients_equal_the_plain_network(rng, nr_resnet):
    keras.utils.set_random_seed(4)
    x = tf.constant((rng.integers(0, 256, (2, 16, 16, 3)) / 127.5 - 1).astype(np.float32))
    m = PixelCNNpp(nr_resnet=nr_resnet, nr_filters=8, nr_logistic_mix=2, dropout_rate=0.5)
    m.data_dependent_init(x)
    weights = tf.constant(rng.normal(size=(2, 16, 16, 20)).astype(np.float32))

    def value_and_grads(forward):
        with tf.GradientTape() as tape:
            out = forward(x)
            loss = tf.reduce_sum(out * weights)
        return out, tape.gradient(loss, m.trainable_variables)

    # The fused model as training runs it (a graph: TensorFlow's CPU rewrites apply),
    # the plain network eagerly.
    fused, fused_grads = tf.function(lambda: value_and_grads(lambda a: m(a, training=False)))()
    plain, plain_grads = value_and_grads(lambda a: _plain_forward(m, a))
    fused, plain = fused.numpy(), plain.numpy()
    fused_grads = [g.numpy() for g in fused_grads]
    plain_grads = [g.numpy() for g in plain_grads]
    np.testing.assert_allclose(fused, plain, rtol=1e-5, atol=1e-5)
    for v, got, want in zip(m.trainable_variables, fused_grads, plain_grads, strict=True):
        scale = np.abs(want).max() + 1e-6
        np.testing.assert_allclose(got, want, atol=1e-4 * scale, err_msg=v.path)


def test_one_exp_concat_elu_equals_the_definition_with_its_gradient(rng):
    x = tf.constant(np.concatenate([rng.normal(size=(4, 31)) * 3, np.zeros((4, 1))], 1), tf.float32)
    dy = tf.constant(rng.normal(size=(4, 64)), tf.float32)
    got, want = [], []
    for fn, into in ((lambda v: L.concat_elu_fused(v, tf.float32), got), (L.concat_elu, want)):
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
    got = tf.bitcast(L._float32_to_bfloat16(x), tf.uint16).numpy()
    want = tf.bitcast(tf.cast(x, tf.bfloat16), tf.uint16).numpy()
    np.testing.assert_array_equal(got, want)
    back = L._bfloat16_to_float32(tf.cast(x, tf.bfloat16)).numpy()
    np.testing.assert_array_equal(back, tf.cast(tf.cast(x, tf.bfloat16), tf.float32).numpy())


@pytest.mark.parametrize(
    "conv, rate", [(L.DownShiftedConv2D, 0.5), (L.DownRightShiftedConv2D, 0.3)]
)
def test_training_block_equals_the_plain_block_with_the_same_dropout_mask(rng, conv, rate):
    # In training the block applies its dropout mask in the compiled concat_elu pass;
    # the plain block with the same draw of the seed generator must agree in value
    # and in every weight's gradient (a graph, as training runs it).
    keras.utils.set_random_seed(5)
    f = 4
    x = tf.constant(rng.normal(size=(2, 8, 8, f)).astype(np.float32))
    a = tf.constant(rng.normal(size=(2, 8, 8, f)).astype(np.float32))
    block = L.GatedResnet(f, conv, use_aux=True, dropout_rate=rate)
    block(x, L.concat_elu(x), (L.concat_elu(a),), training=False)  # builds
    weights = tf.constant(rng.normal(size=(2, 8, 8, f)).astype(np.float32))
    state = block.dropout.seed_generator.state.numpy()

    def plain(x):
        c = block.conv1(L.concat_elu(x)) + block.aux(L.concat_elu(a))
        ce = L.concat_elu(c)
        keep = block.dropout.keep_mask(block.dropout.random_words(tf.shape(ce)), tf.shape(ce))
        ce = ce * tf.cast(keep, ce.dtype) * block.dropout.keep_scale
        p, q = tf.split(block.conv2(ce), 2, axis=-1)
        return x + p * tf.sigmoid(q)

    def fused(x):
        return block(x, L.concat_elu(x), (L.concat_elu(a),), training=True)

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
    no_drop = tf.reduce_sum(block(x, L.concat_elu(x), (L.concat_elu(a),), training=False) * weights)
    assert abs(float(no_drop) - float(got_loss)) > 1e-3
