"""The XLA-compiled pieces of the fused forward pass equal their plain TensorFlow form."""

import numpy as np
import tensorflow as tf

from pixelcnn_pp import fused as F


def _inputs(seed: int = 0) -> tuple[tf.Tensor, tf.Tensor]:
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(2, 8, 8, 4)).astype(np.float32))
    c = tf.constant(rng.normal(size=(2, 8, 8, 8)).astype(np.float32) * 3)
    return x, c


def test_compiled_gate_equals_plain_gate():
    x, c = _inputs()
    p, q = np.split(c.numpy(), 2, axis=-1)
    want = x.numpy() + p / (1.0 + np.exp(-q))
    np.testing.assert_allclose(F._gate(x, c).numpy(), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(F._gate_impl(x, c).numpy(), want, rtol=1e-6, atol=1e-6)


def test_compiled_gate_gradients_equal_plain_ones():
    x, c = _inputs(1)
    weights = tf.constant(np.random.default_rng(2).normal(size=(2, 8, 8, 4)).astype(np.float32))
    grads = []
    for gate in (F._gate, F._gate_impl):
        with tf.GradientTape() as tape:
            tape.watch([x, c])
            loss = tf.reduce_sum(gate(x, c) * weights)
        grads.append([g.numpy() for g in tape.gradient(loss, [x, c])])
    for got, want in zip(grads[0], grads[1], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_compiled_gate_in_bfloat16_and_inside_xla():
    x, c = _inputs(3)
    want = F._gate_impl(x, c).numpy()
    half = F._gate(tf.cast(x, tf.bfloat16), tf.cast(c, tf.bfloat16))
    assert half.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(half, tf.float32).numpy(), want, atol=0.1)
    outer = tf.function(lambda a, b: F._gate(a, b) * 2.0, jit_compile=True)
    np.testing.assert_allclose(outer(x, c).numpy(), 2.0 * want, rtol=1e-6, atol=1e-6)


def test_retracing_warnings_are_dropped_only_for_the_compiled_layer_functions():
    import logging

    def passes(function_name: str) -> bool:
        message = (
            f"5 out of the last 5 calls to <function {function_name} at 0x7f00> "
            "triggered tf.function retracing. Tracing is expensive"
        )
        record = logging.LogRecord("tensorflow", logging.WARNING, "f.py", 1, message, (), None)
        return all(f.filter(record) for f in tf.get_logger().filters)

    F.expect_retracing_of_compiled_pieces()
    F.expect_retracing_of_compiled_pieces()  # installs one filter only
    assert sum(isinstance(f, F._ExpectedTracingFilter) for f in tf.get_logger().filters) == 1
    assert not passes("_block_concat_elu_impl") and not passes("_gate_impl")
    assert passes("train_step") and passes("_block_concat_elu_impl_of_someone_else")
