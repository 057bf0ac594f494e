"""The PixelCNN++ forward pass with fused element-wise kernels, for speed on CPUs.

It runs the layers of :class:`pixelcnn_pp.model.PixelCNNpp` (same variables, same
results up to float rounding; ``tests/test_pixelcnn_fused.py`` holds outputs and
gradients equal to the plain port) with three changes that matter on a CPU, where the
element-wise work between the convolutions is a large share of a step at full
resolution:

* The element-wise work (``concat_elu``, the gate ``x + p * sigmoid(q)``, sums, the
  dropout mask) runs in a few XLA-compiled functions, also when the model itself is
  not compiled: one pass over memory instead of one per graph op. The convolutions
  stay with the default (oneDNN) kernels.
* Each stream's ``concat_elu`` is computed once, by the function that produced the
  stream, and shared by every block that reads it: stream values travel as
  ``(u, concat_elu(u))`` pairs, and the auxiliary 1x1 layer is applied to the parts
  of its input (:func:`aux_products`), so ``concat([u, ul])`` is never formed.
* Dropout draws packed random bits (:class:`PackedDropout`): one 32-bit word serves
  32 elements at rate 0.5, which cuts the random-number cost by 4-32x. The random
  stream is the block's ``keras.layers.Dropout`` seed generator, so the masks differ
  from the plain port's but the rate and the checkpointed state are the same.

With ``matmul_dtype="bfloat16"`` every tensor between blocks and all element-wise
work stay float32 and only the gated resnets' convolutions, their 1x1 layers and the
resolution changes run in bfloat16: their inputs come from one compiled
``concat_elu`` that writes bfloat16 directly, their outputs go into compiled
functions that compute in float32. The CPU's element-wise bfloat16 kernels, slower
than float32 ones, are never used and no separate cast pass over a full-resolution
tensor is added.

Chosen per model by ``PixelCNNpp(fused_kernels=...)``, by default from the enclosing
:func:`use_fused_kernels` scope (``UBMConfig.fused_kernels`` in training and
likelihood extraction), else on.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence

import keras
import tensorflow as tf

from pixelcnn_pp import layers as L

_SETTING = threading.local()


@contextlib.contextmanager
def use_fused_kernels(enabled: bool) -> Iterator[None]:
    """Models built inside run the fused forward pass (True) or the plain port (False)."""
    previous = fused_by_default()
    _SETTING.enabled = bool(enabled)
    try:
        yield
    finally:
        _SETTING.enabled = previous


def fused_by_default() -> bool:
    """Whether models built now run the fused forward pass (True outside any scope)."""
    return getattr(_SETTING, "enabled", True)


# -- element-wise pieces --------------------------------------------------------------
@tf.custom_gradient
def _concat_elu_one_exp(x: tf.Tensor):
    # Of elu(x) and elu(-x) one is linear and the other exp(-|x|) - 1, so one exp per
    # element serves both halves (tf.nn.elu takes expm1 of each). Against expm1 the
    # absolute error stays below 1e-7. The gradient comes from the output alone (elu'
    # is 1 where the output is positive, output + 1 elsewhere, as TensorFlow's EluGrad),
    # which the convolution after it keeps for its own gradient anyway.
    e = tf.exp(-tf.abs(x)) - 1.0
    y = tf.concat([tf.where(x > 0, x, e), tf.where(x < 0, -x, e)], axis=-1)

    def grad(dy: tf.Tensor) -> tf.Tensor:
        d_pos, d_neg = tf.split(dy, 2, axis=-1)
        y_pos, y_neg = tf.split(y, 2, axis=-1)
        slope_pos = tf.where(y_pos > 0, 1.0, y_pos + 1.0)
        slope_neg = tf.where(y_neg > 0, 1.0, y_neg + 1.0)
        return d_pos * slope_pos - d_neg * slope_neg

    return y, grad


@tf.custom_gradient
def _float32_to_bfloat16(x: tf.Tensor):
    # Round to nearest even on the bits: XLA's CPU convert to bfloat16 takes about 1.5x
    # as long as this integer form (which rounds infinities and NaNs the same way, but
    # for NaNs with every mantissa bit set).
    bits = tf.bitcast(x, tf.uint32)
    odd = tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, 16), 1)
    rounded = tf.bitwise.right_shift(bits + (0x7FFF + odd), 16)
    y = tf.bitcast(tf.cast(rounded, tf.uint16), tf.bfloat16)
    return y, lambda dy: tf.cast(dy, tf.float32)


@tf.custom_gradient
def _bfloat16_to_float32(x: tf.Tensor):
    # Exact: a bfloat16 is the upper half of a float32 (a shift where XLA's convert
    # also handles rounding modes it does not need here).
    bits = tf.bitwise.left_shift(tf.cast(tf.bitcast(x, tf.uint16), tf.uint32), 16)
    return tf.bitcast(bits, tf.float32), lambda dy: tf.cast(dy, tf.bfloat16)


def _to_float32(x: tf.Tensor) -> tf.Tensor:
    return _bfloat16_to_float32(x) if x.dtype == tf.bfloat16 else tf.cast(x, tf.float32)


def _from_float32(x: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    return _float32_to_bfloat16(x) if dtype == tf.bfloat16 else tf.cast(x, dtype)


def _concat_elu_to(x: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """``concat_elu(x)`` computed in float32 and written in ``dtype``."""
    return _from_float32(_concat_elu_one_exp(_to_float32(x)), dtype)


def _sum_float32(terms: Sequence[tf.Tensor]) -> tf.Tensor:
    total = _to_float32(terms[0])
    for term in terms[1:]:  # broadcasting (a bias among them)
        total = total + _to_float32(term)
    return total


def _gate_impl(x: tf.Tensor, c: tf.Tensor) -> tf.Tensor:
    # c may be bfloat16 (a bfloat16 conv's output): the gate is computed in x's dtype.
    c = _to_float32(c) if x.dtype == tf.float32 else tf.cast(c, x.dtype)
    p, q = tf.split(c, 2, axis=-1)
    return x + p * tf.sigmoid(q)


def _gate_concat_elu_impl(x: tf.Tensor, c: tf.Tensor, dtype: tf.DType):
    out = _gate_impl(x, c)
    return out, _concat_elu_to(out, dtype)


def _block_concat_elu_impl(
    dtype: tf.DType, dropout: tuple | None, words: tf.Tensor | None, *terms: tf.Tensor
) -> tf.Tensor:
    y = _concat_elu_one_exp(_sum_float32(terms))
    if dropout is not None:
        bits, keep_threshold, keep_scale = dropout
        keep = unpack_keep_mask(words, tf.shape(y), bits, keep_threshold)
        y = tf.where(keep, y * keep_scale, 0.0)
    return _from_float32(y, dtype)


def _stream_concat_elu_impl(y: tf.Tensor, stream_dtype: tf.DType, dtype: tf.DType):
    y32 = _to_float32(y)
    return tf.cast(y32, stream_dtype), _concat_elu_to(y32, dtype)


# Each of these functions is traced once for each resolution, dtype and dropout setting
# (one XLA executable each), which TensorFlow's frequent-retracing warning takes for a
# mistake; for these functions alone it is dropped, from the first fused forward pass.
_EXPECTED_TRACING: set[str] = set()


class _ExpectedTracingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "triggered tf.function retracing" not in message:
            return True
        return not any(name in message for name in _EXPECTED_TRACING)


def expect_retracing_of_compiled_pieces() -> None:
    """Drops TensorFlow's retracing warning for this module's compiled functions only
    (idempotent)."""
    logger = tf.get_logger()
    if not any(isinstance(f, _ExpectedTracingFilter) for f in logger.filters):
        logger.addFilter(_ExpectedTracingFilter())


# The element-wise work between the convolutions, each piece one XLA-compiled function
# (also when the model itself is not compiled; inlined where the caller is). Each
# writes concat_elu in ``dtype``, the dtype of the convolution that reads it (bfloat16
# for bfloat16 matmuls), and computes in float32.
def _xla(fn):
    _EXPECTED_TRACING.add(f"<function {fn.__name__} ")
    return tf.function(fn, jit_compile=True, autograph=False)


# ``concat_elu(x)``: [..., C] -> [..., 2C] in dtype.
concat_elu_fused = _xla(_concat_elu_to)
# The gate ``x + p * sigmoid(q)`` of ``(p, q) = split(c)``: ``x`` [B,H,W,F], ``c``
# [B,H,W,2F] -> [B,H,W,F] in x's dtype.
_gate = _xla(_gate_impl)
# The gate and its concat_elu (the next blocks' input) from one pass.
gate_concat_elu = _xla(_gate_concat_elu_impl)
# A gated resnet's middle: ``concat_elu(sum(terms))`` [B,H,W,2F], then dropout where
# ``dropout`` = (bits, keep threshold, keep scale) of the layer with its random
# ``words`` (None: no dropout), written in dtype.
block_concat_elu = _xla(_block_concat_elu_impl)
# A resolution change's output in the streams' dtype and its concat_elu.
stream_concat_elu = _xla(_stream_concat_elu_impl)


# -- packed dropout -------------------------------------------------------------------
def unpack_keep_mask(
    words: tf.Tensor, shape: tf.Tensor, bits: int, keep_threshold: int
) -> tf.Tensor:
    """The dropout keep mask (bool, ``shape``) from packed random ``words`` (uint32):
    element i takes bits ``[i * bits, (i + 1) * bits)`` of the word stream as its level
    and is kept where ``level >= keep_threshold``. Plain TensorFlow ops, so a compiled
    function can fuse it with the work that applies the mask."""
    if bits == 1:
        lanes = tf.constant(list(range(32)), tf.uint32)
        levels = tf.bitwise.bitwise_and(tf.bitwise.right_shift(words[:, None], lanes), 1)
    else:
        levels = tf.bitcast(words, tf.uint8 if bits == 8 else tf.uint16)
    size = tf.reduce_prod(shape)
    levels = tf.slice(tf.reshape(levels, [-1]), [0], [size])
    return tf.reshape(levels, shape) >= tf.cast(keep_threshold, levels.dtype)


class PackedDropout:
    """Element-wise dropout (inverted: kept values scaled by 1 / (1 - rate)) from packed
    random bits.

    Each 32-bit random word from the stateless RNG serves several elements, 32 of them
    at rate 0.5 (one bit each), four at other multiples of 1/256 (8-bit levels), else
    two (16-bit levels, the rate rounded to 1/65536). An element is kept where its
    level reaches ``rate * 2**bits``. Draws from ``seed_generator`` (a gated resnet's
    ``keras.layers.Dropout`` generator), so it adds no state of its own.
    """

    def __init__(self, rate: float, seed_generator: keras.random.SeedGenerator) -> None:
        if not 0.0 < rate < 1.0:
            raise ValueError(f"dropout rate must be in (0, 1), got {rate}.")
        self.rate = float(rate)
        self.seed_generator = seed_generator
        if self.rate == 0.5:
            self.bits_per_element = 1
        else:
            self.bits_per_element = 8 if float(self.rate * 256).is_integer() else 16
        # An element is kept where its random level is at least this.
        self.keep_threshold = round(self.rate * 2**self.bits_per_element)
        self.keep_scale = 1.0 / (1.0 - self.rate)

    def random_words(self, shape: tf.Tensor) -> tf.Tensor:
        """Fresh random uint32 words for a mask of ``shape`` (see
        :func:`unpack_keep_mask`), the next draw of the seed generator."""
        # Stateless RNG ops (also under XLA) want int32 seeds; the generator's are int64.
        seed = tf.cast(tf.math.floormod(self.seed_generator.next(), 2**31 - 2), tf.int32)
        per_word = 32 // self.bits_per_element
        words = (tf.reduce_prod(shape) + per_word - 1) // per_word
        return tf.random.stateless_uniform([words], seed, minval=None, maxval=None, dtype=tf.uint32)

    def keep_mask(self, words: tf.Tensor, shape: tf.Tensor) -> tf.Tensor:
        """The bool mask of ``shape`` that ``words`` (from ``random_words``) encode."""
        return unpack_keep_mask(words, shape, self.bits_per_element, self.keep_threshold)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """Applies a fresh mask: ``[..]`` -> same shape."""
        shape = tf.shape(x)
        keep = self.keep_mask(self.random_words(shape), shape)
        return x * (tf.cast(keep, x.dtype) * self.keep_scale)


# -- blocks and the network -----------------------------------------------------------
def aux_products(dense: L.WNDense, parts: Sequence[tf.Tensor]) -> list[tf.Tensor]:
    """A built 1x1 layer on ``concat_elu(concat([p_1, ..., p_k]))``, given as the parts
    ``[concat_elu(p_1), ..., concat_elu(p_k)]`` (each ``[..., 2C_i]``): the bias-free
    product of each part with its rows of the kernel (whose rows are ``p_1..p_k`` then
    ``-p_1..-p_k``), so the streams' concat_elu is reused and the concat never formed.
    Their sum plus ``dense.bias()`` is the layer's output ``[..., filters]``."""
    kernel = dense.kernel()
    if len(parts) == 1:
        return [L.matmul_last_axis(parts[0], kernel)]
    half = kernel.shape[0] // 2
    out, offset = [], 0
    for part in parts:
        n = part.shape[-1] // 2
        rows = tf.concat(
            [kernel[offset : offset + n], kernel[half + offset : half + offset + n]], 0
        )
        out.append(L.matmul_last_axis(part, rows))
        offset += n
    return out


def gated_resnet(
    block: L.GatedResnet,
    x: tf.Tensor,
    x_ce: tf.Tensor,
    aux_ces: Sequence[tf.Tensor] = (),
    training: bool | None = None,
    return_ce: bool = False,
):
    """A built :class:`~pixelcnn_pp.layers.GatedResnet` on ``x`` given with its
    ``concat_elu``.

    Args:
      block: the gated resnet whose layers to run.
      x: ``[B,H,W,F]`` in the streams' dtype.
      x_ce: ``concat_elu(x)`` ``[B,H,W,2F]`` in the dtype the block's convolutions read.
      aux_ces: ``concat_elu`` of each part of the auxiliary input ``a = concat(parts)``
        (see :func:`aux_products`); empty for a block without one.
      training: applies dropout (packed, see :class:`PackedDropout`) when true.
      return_ce: also return ``concat_elu`` of the output.

    Returns:
      ``[B,H,W,F]``, or ``(out, concat_elu(out))`` with ``return_ce``.
    """
    conv_dtype = tf.as_dtype(block.conv1.compute_dtype)
    terms = [block.conv1(x_ce)]
    if aux_ces:  # the bias joins the sum in the compiled pass
        terms += [*aux_products(block.aux, aux_ces), block.aux.bias()]
    # concat_elu and dropout in one compiled pass. (conv2's zero padding stays a graph
    # op, which the CPU rewrite fuses with the convolution; padding in the compiled pass
    # made the likelihood pass a third slower.)
    dropout, words = None, None
    if block.dropout is not None and training:
        d = PackedDropout(block.dropout.rate, block.dropout.seed_generator)
        dropout = (d.bits_per_element, d.keep_threshold, d.keep_scale)
        words = d.random_words(tf.concat([tf.shape(terms[0])[:-1], [2 * block.filters]], 0))
    c = block.conv2(block_concat_elu(conv_dtype, dropout, words, *terms))
    if return_ce:
        return gate_concat_elu(x, c, conv_dtype)
    return _gate(x, c)


def forward(model, x: tf.Tensor, training: bool | None = None) -> tf.Tensor:
    """``model``'s network (a built :class:`~pixelcnn_pp.model.PixelCNNpp`) with fused
    kernels.

    Args:
      model: the PixelCNN++ whose layers to run.
      x: the image with its channel of ones, ``[B,H,W,4]`` in the model's compute dtype.
      training: applies dropout when true.

    Returns:
      params float32 ``[B, H, W, 10 * nr_logistic_mix]``.
    """
    expect_retracing_of_compiled_pieces()
    stream_dtype = tf.as_dtype(model.compute_dtype)
    # The dtype of every concat_elu: the one the gated resnets' convolutions read.
    ce_dtype = tf.as_dtype(L.matmul_policy(model.dtype_policy, model.matmul_dtype).compute_dtype)

    def with_concat_elu(y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # A resolution change's output in the streams' dtype, and its concat_elu.
        if y.dtype == stream_dtype:
            return y, concat_elu_fused(y, ce_dtype)
        return stream_concat_elu(y, stream_dtype, ce_dtype)

    def block(name: str, *args, **kwargs):
        return gated_resnet(getattr(model, name), *args, training=training, **kwargs)

    # Every stream value travels with its concat_elu (what the gated resnets read),
    # computed once in the pass that produced the value. The stacks hold only the
    # concat_elu: the down pass reads them as auxiliary inputs.
    # The shifts stay graph ops, one per convolution output: a compiled function
    # taking several convolution outputs gives their gradients one graph node,
    # which TensorFlow's CPU rewrite fusing a convolution's filter and bias
    # gradients pairs up wrongly (each input convolution's bias got another's).
    u = L.down_shift(model.u_in(x))
    ul = L.down_shift(model.ul_in_up(x)) + L.right_shift(model.ul_in_left(x))
    u_ce = concat_elu_fused(u, ce_dtype)
    ul_ce = concat_elu_fused(ul, ce_dtype)
    u_stack, ul_stack = [u_ce], [ul_ce]

    for level in range(3):
        for i in range(model.nr_resnet):
            u, u_ce = block(f"up{level}_u{i}", u, u_ce, return_ce=True)
            ul, ul_ce = block(f"up{level}_ul{i}", ul, ul_ce, (u_ce,), return_ce=True)
            u_stack.append(u_ce)
            ul_stack.append(ul_ce)
        if level < 2:
            u, u_ce = with_concat_elu(getattr(model, f"up{level}_u_down")(u))
            ul, ul_ce = with_concat_elu(getattr(model, f"up{level}_ul_down")(ul))
            u_stack.append(u_ce)
            ul_stack.append(ul_ce)

    # The top of each stack is the streams' current value.
    u_stack.pop()
    ul_stack.pop()
    for level, pairs in enumerate((model.nr_resnet, model.nr_resnet + 1, model.nr_resnet + 1)):
        if level > 0:
            u, u_ce = with_concat_elu(getattr(model, f"dn{level}_u_up")(u))
            ul, ul_ce = with_concat_elu(getattr(model, f"dn{level}_ul_up")(ul))
        for i in range(pairs):
            u, u_ce = block(f"dn{level}_u{i}", u, u_ce, (u_stack.pop(),), return_ce=True)
            # The auxiliary input is concat([u, ul popped]), given as its parts.
            aux = (u_ce, ul_stack.pop())
            if i < pairs - 1:
                ul, ul_ce = block(f"dn{level}_ul{i}", ul, ul_ce, aux, return_ce=True)
            else:  # the next reader is a resolution change or the output layer
                ul = block(f"dn{level}_ul{i}", ul, ul_ce, aux)
    if u_stack or ul_stack:  # pragma: no cover - structural invariant
        raise AssertionError("PixelCNN++ stacks must be empty after the down pass.")

    return tf.cast(model.out_nin(tf.nn.elu(ul)), tf.float32)
