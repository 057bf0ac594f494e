"""Weight-normalised, causally shifted layers of PixelCNN++.

Follows Salimans, Karpathy, Chen & Kingma, "PixelCNN++: Improving the PixelCNN with
Discretized Logistic Mixture Likelihood and Other Modifications" (ICLR 2017) and the
layer definitions of its reference TF1 code (openai/pixel-cnn), re-written for TF2 /
Keras 3:

* Every convolution, transposed convolution and 1x1 ("nin") layer is weight-normalised
  (Salimans & Kingma, 2016): parameters ``V`` (init N(0, 0.05)), ``g`` (ones, one per
  output channel) and ``b`` (zeros); the kernel is ``g * V / ||V||`` with the norm taken
  over every axis but the output-channel axis.
* Data-dependent initialisation: inside :func:`data_dependent_init_scope`, each layer
  normalises its own pre-activation on the batch it sees (``g <- g * s``,
  ``b <- b - m * s``, ``s = init_scale / sqrt(var + 1e-10)``) and recomputes its output
  with the new parameters, so later layers see normalised inputs.
* Causality comes from padding ("shifted" convolutions) and from ``down_shift`` /
  ``right_shift``; all tensors are channels-last ``[B, H, W, C]``.

Variables are kept in float32; the computation runs in the layer's Keras compute dtype
(so a ``mixed_bfloat16`` / ``mixed_float16`` policy works), with the weight-normalised
kernel formed in float32 and then cast. The element-wise work between convolutions
(``concat_elu``, the gate, sums) runs in a few XLA-compiled functions,
also when the model itself is not compiled; each stream's ``concat_elu`` is computed
once, by the function that produced the stream, and shared by every block that reads
it (see :class:`GatedResnet` and :class:`WNDense` on parts).

A third precision, ``matmul_dtype="bfloat16"`` (see :func:`matmul_precision`), keeps
every tensor between blocks, the input and output layers and all element-wise work in
float32 and runs only the convolutions and 1x1 layers of the gated resnets and the
resolution changes in bfloat16 (oneDNN's AMX / AVX512-BF16 kernels on CPUs, tensor
cores on GPUs; accumulation in float32 inside the kernel): their inputs come from one
XLA-compiled ``concat_elu`` that writes bfloat16 directly, their outputs go into
XLA-compiled element-wise functions that compute in float32. The CPU's element-wise
bfloat16 kernels, slower than float32 ones, are never used and no separate cast pass
over a full-resolution tensor is added.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence

import keras
import tensorflow as tf

from pixelcnn_pp.config import MATMUL_DTYPES

_DDI_STATE = threading.local()


@contextlib.contextmanager
def data_dependent_init_scope() -> Iterator[None]:
    """Within this scope, weight-normalised layers re-initialise g and b on their input.

    Run exactly one forward pass (eagerly) on the initialisation batch inside the scope;
    every weight-normalised layer it touches sets its g and b from the moments of its
    own pre-activation output and returns the recomputed output.
    """
    previous = getattr(_DDI_STATE, "active", False)
    _DDI_STATE.active = True
    try:
        yield
    finally:
        _DDI_STATE.active = previous


def _ddi_active() -> bool:
    return getattr(_DDI_STATE, "active", False)


_MATMUL_STATE = threading.local()


@contextlib.contextmanager
def matmul_precision(dtype: str) -> Iterator[None]:
    """Models built inside default to ``matmul_dtype=dtype`` (like a Keras dtype policy).

    Args:
      dtype: "float32" (every layer in its compute dtype) or "bfloat16" (the gated
        resnets' convolutions and 1x1 layers and the resolution changes in bfloat16,
        everything else float32).
    """
    check_matmul_dtype(dtype)
    previous = default_matmul_dtype()
    _MATMUL_STATE.dtype = dtype
    try:
        yield
    finally:
        _MATMUL_STATE.dtype = previous


def default_matmul_dtype() -> str:
    """The matmul dtype models built now default to ("float32" outside any scope)."""
    return getattr(_MATMUL_STATE, "dtype", "float32")


def check_matmul_dtype(dtype: str) -> None:
    """Raises ValueError for a matmul dtype other than those in MATMUL_DTYPES."""
    if dtype not in MATMUL_DTYPES:
        raise ValueError(
            f"Unknown matmul precision {dtype!r}: choose one of {', '.join(MATMUL_DTYPES)}."
        )


def matmul_policy(dtype_policy, matmul_dtype: str):
    """The Keras dtype policy of a layer whose linear map runs in ``matmul_dtype``.

    "bfloat16" gives "mixed_bfloat16" (float32 variables, bfloat16 compute) for a
    float32 model; otherwise the model's own policy is kept.
    """
    if matmul_dtype == "bfloat16" and dtype_policy.compute_dtype == "float32":
        return keras.DTypePolicy("mixed_bfloat16")
    return dtype_policy


class _WeightNormLayer(keras.layers.Layer):
    """Base class: owns V, g, b, the weight-norm kernel and the data-dependent init.

    Subclasses implement ``_v_shape``, ``_norm_axes``, ``_g_shape`` and ``_linear``
    (the raw linear map with the normalised kernel, plus bias), and may override
    ``_finish`` (cropping after the linear map).
    """

    def __init__(self, filters: int, init_scale: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if filters <= 0:
            raise ValueError(f"filters must be a positive integer, got {filters}.")
        self.filters = int(filters)
        self.init_scale = float(init_scale)

    # -- parameters --------------------------------------------------------------
    def _v_shape(self, in_channels: int) -> tuple[int, ...]:
        raise NotImplementedError

    def _norm_axes(self) -> list[int]:
        raise NotImplementedError

    def _g_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def build(self, input_shape: Sequence[int | None]) -> None:
        in_channels = input_shape[-1]
        if in_channels is None:
            raise ValueError(f"{self.name}: the channel dimension of the input must be known.")
        self.V = self.add_weight(
            name="V",
            shape=self._v_shape(int(in_channels)),
            initializer=keras.initializers.RandomNormal(0.0, 0.05),
            dtype="float32",
            autocast=False,
        )
        self.g = self.add_weight(
            name="g", shape=(self.filters,), initializer="ones", dtype="float32", autocast=False
        )
        self.b = self.add_weight(
            name="b", shape=(self.filters,), initializer="zeros", dtype="float32", autocast=False
        )

    def kernel(self) -> tf.Tensor:
        """The weight-normalised kernel g * V / ||V||, in the compute dtype."""
        v = tf.convert_to_tensor(self.V.value)
        g = tf.reshape(tf.convert_to_tensor(self.g.value), self._g_shape())
        w = (
            g
            * v
            * tf.math.rsqrt(tf.reduce_sum(tf.square(v), axis=self._norm_axes(), keepdims=True))
        )
        return tf.cast(w, self.compute_dtype)

    def bias(self) -> tf.Tensor:
        return tf.cast(tf.convert_to_tensor(self.b.value), self.compute_dtype)

    # -- forward -----------------------------------------------------------------
    def _linear(self, x: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def _finish(self, y: tf.Tensor) -> tf.Tensor:
        return y

    def _data_dependent_init(self, x: tf.Tensor) -> None:
        """Sets g and b so that this layer's pre-activation on x has per-channel mean 0
        and standard deviation init_scale."""
        y = tf.cast(self._linear(x), tf.float32)
        axes = list(range(len(y.shape) - 1))
        mean, var = tf.nn.moments(y, axes=axes)
        scale = self.init_scale * tf.math.rsqrt(var + 1e-10)
        self.g.assign(self.g * scale)
        self.b.assign(self.b - mean * scale)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        if _ddi_active():
            # Re-scale g and b first; the output below is then recomputed with them, so
            # later layers see normalised inputs during the initialisation pass.
            self._data_dependent_init(x)
        return self._finish(self._linear(x))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"filters": self.filters, "init_scale": self.init_scale})
        return config


class WNDense(_WeightNormLayer):
    """Weight-normalised 1x1 layer ("nin"): dense over the last (channel) axis.

    ``[..., C_in] -> [..., filters]``. Called on a list of ``concat_elu`` outputs
    ``[concat_elu(p_1), ..., concat_elu(p_k)]``, it equals the layer on
    ``concat_elu(concat([p_1, ..., p_k]))`` (whose channels are ``p_1..p_k`` then
    ``-p_1..-p_k``): each part meets its own rows of the one kernel, so the streams'
    ``concat_elu`` is computed once and the concat never formed.
    """

    def _v_shape(self, in_channels: int) -> tuple[int, ...]:
        return (in_channels, self.filters)

    def _norm_axes(self) -> list[int]:
        return [0]

    def _g_shape(self) -> tuple[int, ...]:
        return (1, self.filters)

    def build(self, input_shape) -> None:
        if input_shape and isinstance(input_shape[0], (list, tuple)):  # parts
            input_shape = (*input_shape[0][:-1], sum(shape[-1] for shape in input_shape))
        super().build(input_shape)

    def _matmul(self, x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        # A 2-D matmul is the fastest channel contraction on CPU and under XLA.
        shape = tf.shape(x)
        y = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), kernel)
        return tf.reshape(y, tf.concat([shape[:-1], [self.filters]], axis=0))

    def products(self, parts: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        """The bias-free products of each ``concat_elu(p_i)`` [..., 2C_i] with its rows."""
        kernel = self.kernel()
        if len(parts) == 1:
            return [self._matmul(parts[0], kernel)]
        half = kernel.shape[0] // 2
        out, offset = [], 0
        for part in parts:
            n = part.shape[-1] // 2
            rows = tf.concat(
                [kernel[offset : offset + n], kernel[half + offset : half + offset + n]], 0
            )
            out.append(self._matmul(part, rows))
            offset += n
        return out

    def _linear(self, x) -> tf.Tensor:
        if isinstance(x, (list, tuple)):
            return tf.add_n(self.products(x)) + self.bias()
        return self._matmul(x, self.kernel()) + self.bias()

    def compute_output_shape(self, input_shape):
        if input_shape and isinstance(input_shape[0], (list, tuple)):
            input_shape = input_shape[0]
        return tuple(input_shape[:-1]) + (self.filters,)


class _WeightNormSpatial(_WeightNormLayer):
    """A weight-normalised layer with a 2-D kernel size and strides."""

    def __init__(
        self,
        filters: int,
        kernel_size: Sequence[int] = (3, 3),
        strides: Sequence[int] = (1, 1),
        init_scale: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(filters, init_scale=init_scale, **kwargs)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.strides = tuple(int(s) for s in strides)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"kernel_size": self.kernel_size, "strides": self.strides})
        return config


class WNConv2D(_WeightNormSpatial):
    """Weight-normalised VALID 2-D convolution, ``[B,H,W,C] -> [B,H',W',filters]``."""

    def _v_shape(self, in_channels: int) -> tuple[int, ...]:
        return (*self.kernel_size, in_channels, self.filters)

    def _norm_axes(self) -> list[int]:
        return [0, 1, 2]

    def _g_shape(self) -> tuple[int, ...]:
        return (1, 1, 1, self.filters)

    def _padding(self) -> list[list[int]] | None:
        """Zero padding ``[[0, 0], rows, columns, [0, 0]]`` before the VALID conv, or None."""
        return None

    def _linear(self, x: tf.Tensor) -> tf.Tensor:
        pad = self._padding()
        if pad is not None:
            # A separate pad (fused with the conv by the CPU graph rewriter) keeps the
            # oneDNN backward kernels; explicit conv padding falls back to slower ones.
            x = tf.pad(x, pad)
        y = tf.nn.conv2d(x, self.kernel(), strides=(1, *self.strides, 1), padding="VALID")
        return tf.nn.bias_add(y, self.bias())


class WNConv2DTranspose(_WeightNormSpatial):
    """Weight-normalised VALID transposed convolution.

    ``[B,H,W,C] -> [B, s_h*H + k_h - 1, s_w*W + k_w - 1, filters]`` (the reference code's
    VALID target shape). V has shape ``[k_h, k_w, filters, C]``; its norm is over all
    axes but the output-channel axis (axis 2).
    """

    def _v_shape(self, in_channels: int) -> tuple[int, ...]:
        return (*self.kernel_size, self.filters, in_channels)

    def _norm_axes(self) -> list[int]:
        return [0, 1, 3]

    def _g_shape(self) -> tuple[int, ...]:
        return (1, 1, self.filters, 1)

    def _linear(self, x: tf.Tensor) -> tf.Tensor:
        kh, kw = self.kernel_size
        sh, sw = self.strides
        h, w = x.shape[1], x.shape[2]
        dyn = tf.shape(x)
        out_h = sh * h + kh - 1 if h is not None else sh * dyn[1] + kh - 1
        out_w = sw * w + kw - 1 if w is not None else sw * dyn[2] + kw - 1
        out_shape = tf.stack([dyn[0], out_h, out_w, self.filters])
        y = tf.nn.conv2d_transpose(
            x, self.kernel(), out_shape, strides=(1, sh, sw, 1), padding="VALID"
        )
        return tf.nn.bias_add(y, self.bias())


# -- causal shifts ------------------------------------------------------------------
def down_shift(x: tf.Tensor) -> tf.Tensor:
    """Shifts ``[B,H,W,C]`` down by one row: a zero row on top, the last row dropped."""
    # tf.slice rather than x[:, :-1]: its gradient is a pad, much cheaper on CPU.
    kept = tf.slice(x, [0, 0, 0, 0], [-1, tf.shape(x)[1] - 1, -1, -1])
    return tf.pad(kept, [[0, 0], [1, 0], [0, 0], [0, 0]])


def right_shift(x: tf.Tensor) -> tf.Tensor:
    """Shifts ``[B,H,W,C]`` right by one column: a zero column left, the last dropped."""
    kept = tf.slice(x, [0, 0, 0, 0], [-1, -1, tf.shape(x)[2] - 1, -1])
    return tf.pad(kept, [[0, 0], [0, 0], [1, 0], [0, 0]])


def concat_elu(x: tf.Tensor) -> tf.Tensor:
    """``elu(concat([x, -x], channels))``: ``[..., C] -> [..., 2C]`` (the definition)."""
    return tf.nn.elu(tf.concat([x, -x], axis=-1))


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


# The element-wise work between the convolutions, each piece one XLA-compiled function
# (also when the model itself is not compiled; inlined where the caller is): one pass
# over memory instead of one per graph op, a large share of a CPU step at full
# resolution. The convolutions stay with the default (oneDNN) kernels. Each writes
# concat_elu in ``dtype``, the dtype of the convolution that reads it (bfloat16 for
# bfloat16 matmuls), and computes in float32.
def _xla(fn):
    _EXPECTED_TRACING.add(f"<function {fn.__name__} ")
    return tf.function(fn, jit_compile=True, autograph=False)


# Each of these functions is traced once for each resolution, dtype and dropout setting
# (one XLA executable each), which TensorFlow's frequent-retracing warning takes for a
# mistake; for these functions alone it is dropped.
_EXPECTED_TRACING: set[str] = set()


class _ExpectedTracingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "triggered tf.function retracing" not in message:
            return True
        return not any(name in message for name in _EXPECTED_TRACING)


tf.get_logger().addFilter(_ExpectedTracingFilter())


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


class DownShiftedConv2D(WNConv2D):
    """Convolution that sees only rows above and the current row's neighbourhood.

    Kernel ``(k_h, k_w)`` (2x3 by default, k_w odd): pads ``k_h - 1`` rows on top and
    ``(k_w - 1) / 2`` columns on each side, then a VALID (optionally strided) conv.
    With stride 1 the output keeps the input's H and W.
    """

    def __init__(self, filters: int, kernel_size: Sequence[int] = (2, 3), **kwargs) -> None:
        super().__init__(filters, kernel_size=kernel_size, **kwargs)
        if self.kernel_size[1] % 2 != 1:
            raise ValueError(f"DownShiftedConv2D needs an odd kernel width, got {kernel_size}.")

    def _padding(self) -> list[list[int]]:
        kh, kw = self.kernel_size
        side = (kw - 1) // 2
        return [[0, 0], [kh - 1, 0], [side, side], [0, 0]]


class DownRightShiftedConv2D(WNConv2D):
    """Convolution that sees only rows above and columns to the left (inclusive).

    Kernel ``(k_h, k_w)`` (2x2 by default): pads ``k_h - 1`` rows on top and ``k_w - 1``
    columns on the left, then a VALID (optionally strided) conv.
    """

    def __init__(self, filters: int, kernel_size: Sequence[int] = (2, 2), **kwargs) -> None:
        super().__init__(filters, kernel_size=kernel_size, **kwargs)

    def _padding(self) -> list[list[int]]:
        kh, kw = self.kernel_size
        return [[0, 0], [kh - 1, 0], [kw - 1, 0], [0, 0]]


class DownShiftedConv2DTranspose(WNConv2DTranspose):
    """Transposed counterpart of :class:`DownShiftedConv2D` (kernel 2x3 by default).

    VALID transposed conv, then crops the last ``k_h - 1`` rows and ``(k_w - 1) / 2``
    columns on each side, so a stride-2 layer maps ``[B,H,W,C] -> [B,2H,2W,filters]``.
    """

    def __init__(self, filters: int, kernel_size: Sequence[int] = (2, 3), **kwargs) -> None:
        super().__init__(filters, kernel_size=kernel_size, **kwargs)
        if self.kernel_size[1] % 2 != 1:
            raise ValueError(
                f"DownShiftedConv2DTranspose needs an odd kernel width, got {kernel_size}."
            )

    def _finish(self, y: tf.Tensor) -> tf.Tensor:
        kh, kw = self.kernel_size
        side = (kw - 1) // 2
        shape = tf.shape(y)
        return tf.slice(y, [0, 0, side, 0], [-1, shape[1] - (kh - 1), shape[2] - 2 * side, -1])


class DownRightShiftedConv2DTranspose(WNConv2DTranspose):
    """Transposed counterpart of :class:`DownRightShiftedConv2D` (kernel 2x2 by default).

    VALID transposed conv, then crops the last ``k_h - 1`` rows and ``k_w - 1`` columns.
    """

    def __init__(self, filters: int, kernel_size: Sequence[int] = (2, 2), **kwargs) -> None:
        super().__init__(filters, kernel_size=kernel_size, **kwargs)

    def _finish(self, y: tf.Tensor) -> tf.Tensor:
        kh, kw = self.kernel_size
        shape = tf.shape(y)
        return tf.slice(y, [0, 0, 0, 0], [-1, shape[1] - (kh - 1), shape[2] - (kw - 1), -1])


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


class Dropout(keras.layers.Layer):
    """Element-wise dropout (inverted: kept values are scaled by 1 / (1 - rate)).

    Same semantics as ``keras.layers.Dropout`` but with a cheaper mask: each 32-bit
    random word from the stateless RNG serves several elements, 32 of them at rate
    0.5 (one bit each), four at other multiples of 1/256 (8-bit levels), else two
    (16-bit levels, the rate rounded to 1/65536), which cuts the random-number cost,
    a visible share of a CPU training step, by 4-32x. An element is kept where its
    level reaches ``rate * 2**bits``. Active only when ``training`` is true.
    ``[..]`` -> same shape.
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}.")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        if self.rate == 0.5:
            self._bits = 1
        else:
            self._bits = 8 if float(self.rate * 256).is_integer() else 16
        self._threshold = round(self.rate * 2**self._bits)

    @property
    def bits_per_element(self) -> int:
        """Random bits per element: 1, 8 or 16."""
        return self._bits

    @property
    def keep_threshold(self) -> int:
        """An element is kept where its random level is at least this."""
        return self._threshold

    @property
    def keep_scale(self) -> float:
        """The factor of the kept elements, ``1 / (1 - rate)``."""
        return 1.0 / (1.0 - self.rate)

    def random_words(self, shape: tf.Tensor) -> tf.Tensor:
        """Fresh random uint32 words for a mask of ``shape`` (see
        :func:`unpack_keep_mask`), the next draw of the layer's seed generator."""
        # Stateless RNG ops (also under XLA) want int32 seeds; the generator's are int64.
        seed = tf.cast(tf.math.floormod(self.seed_generator.next(), 2**31 - 2), tf.int32)
        per_word = 32 // self._bits
        words = (tf.reduce_prod(shape) + per_word - 1) // per_word
        return tf.random.stateless_uniform([words], seed, minval=None, maxval=None, dtype=tf.uint32)

    def keep_mask(self, words: tf.Tensor, shape: tf.Tensor) -> tf.Tensor:
        """The bool mask of ``shape`` that ``words`` (from ``random_words``) encode."""
        return unpack_keep_mask(words, shape, self._bits, self._threshold)

    def call(self, x: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if not training or self.rate == 0.0:
            return x
        shape = tf.shape(x)
        keep = self.keep_mask(self.random_words(shape), shape)
        return x * (tf.cast(keep, x.dtype) * self.keep_scale)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config


class GatedResnet(keras.layers.Layer):
    """Gated residual block of PixelCNN++.

    ``c = conv(concat_elu(x), F)``; with an auxiliary input ``a``:
    ``c += nin(concat_elu(a), F)``; ``c = dropout(concat_elu(c))`` (training only);
    ``c = conv(c, 2F, init_scale=0.1)``; ``(p, q) = split(c)``; returns
    ``x + p * sigmoid(q)``.

    The block takes ``concat_elu`` of its inputs already computed, since the model
    needs each stream's ``concat_elu`` in several places and computes it once (inside
    the gate that produced the stream, see ``gate_concat_elu``), and can return its own
    output's along with it.

    Call: ``block(x, x_ce, aux_ces=(), training=None, return_ce=False)`` with ``x``
    ``[B,H,W,F]`` in the streams' dtype, ``x_ce = concat_elu(x)`` ``[B,H,W,2F]`` in
    ``conv_dtype`` and, with ``use_aux``, ``aux_ces``: ``concat_elu`` of each part of
    the auxiliary input ``a = concat(parts)`` (see :class:`WNDense`). Returns
    ``[B,H,W,F]``, or ``(out, concat_elu(out))`` with ``return_ce``.

    Args:
      filters: F, the channel count of x (and of the output).
      conv: the shifted convolution class (``DownShiftedConv2D`` or
        ``DownRightShiftedConv2D``); both convs use its default kernel.
      use_aux: whether the block takes the auxiliary input ``a``.
      dropout_rate: element-wise dropout rate applied in training only.
      matmul_dtype: "float32" (the block's own dtype policy throughout) or "bfloat16"
        (convs and nin in bfloat16; x, a, the output and the element-wise work stay
        in the block's float32).
    """

    def __init__(
        self,
        filters: int,
        conv: type[WNConv2D],
        use_aux: bool = False,
        dropout_rate: float = 0.5,
        matmul_dtype: str = "float32",
        **kwargs,
    ) -> None:
        # Inputs arrive in the dtypes the convolutions read (bfloat16 concat_elu for
        # bfloat16 matmuls): Keras must not cast them to the block's float32.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}.")
        check_matmul_dtype(matmul_dtype)
        self.filters = int(filters)
        self.use_aux = bool(use_aux)
        self.dropout_rate = float(dropout_rate)
        self.matmul_dtype = matmul_dtype
        pol = matmul_policy(self.dtype_policy, matmul_dtype)
        self.conv_dtype = tf.as_dtype(pol.compute_dtype)
        self.conv1 = conv(self.filters, name="conv1", dtype=pol)
        self.aux = WNDense(self.filters, name="aux_nin", dtype=pol) if self.use_aux else None
        self.dropout = (
            Dropout(self.dropout_rate, name="dropout", dtype=pol) if self.dropout_rate > 0 else None
        )
        self.conv2 = conv(2 * self.filters, init_scale=0.1, name="conv2", dtype=pol)

    def build(self, x_shape) -> None:
        # The convolutions and the 1x1 layer build on their first call, from the shapes
        # they see (conv2 reads this block's own intermediate). Defined so that Keras
        # does not warn at every model build that a layer without a build method has
        # unbuilt sublayers.
        del x_shape

    def call(
        self,
        x: tf.Tensor,
        x_ce: tf.Tensor,
        aux_ces: Sequence[tf.Tensor] = (),
        training: bool | None = None,
        return_ce: bool = False,
    ):
        if self.use_aux != bool(aux_ces):
            raise ValueError(
                f"{self.name} was built with use_aux={self.use_aux} but called with "
                f"{len(aux_ces)} auxiliary inputs."
            )
        terms = [self.conv1(x_ce)]
        if aux_ces:
            if _ddi_active() or not self.aux.built:
                # Through the layer call: it builds, and re-initialises g and b.
                terms.append(self.aux(list(aux_ces)))
            else:  # the bias joins the sum in the compiled pass
                terms += [*self.aux.products(aux_ces), self.aux.bias()]
        # concat_elu and dropout in one compiled pass. (conv2's zero padding stays a
        # graph op, which the CPU rewrite fuses with the convolution; padding in the
        # compiled pass made the likelihood pass a third slower.)
        dropout, words = None, None
        if self.dropout is not None and training:
            d = self.dropout
            dropout = (d.bits_per_element, d.keep_threshold, d.keep_scale)
            words = d.random_words(tf.concat([tf.shape(terms[0])[:-1], [2 * self.filters]], 0))
        c = self.conv2(block_concat_elu(self.conv_dtype, dropout, words, *terms))
        if return_ce:
            return gate_concat_elu(x, c, self.conv_dtype)
        return _gate(x, c)

    def compute_output_shape(self, input_shape, *args, **kwargs):
        return input_shape
