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
kernel formed in float32 and then cast. The gated resnet's gate is one XLA-compiled
function (see ``_gate``), also when the model itself is not compiled.

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

    ``[..., C_in] -> [..., filters]``.
    """

    def _v_shape(self, in_channels: int) -> tuple[int, ...]:
        return (in_channels, self.filters)

    def _norm_axes(self) -> list[int]:
        return [0]

    def _g_shape(self) -> tuple[int, ...]:
        return (1, self.filters)

    def _linear(self, x: tf.Tensor) -> tf.Tensor:
        # A 2-D matmul is the fastest channel contraction on CPU and under XLA.
        shape = tf.shape(x)
        flat = tf.reshape(x, [-1, x.shape[-1]])
        y = tf.matmul(flat, self.kernel()) + self.bias()
        return tf.reshape(y, tf.concat([shape[:-1], [self.filters]], axis=0))

    def compute_output_shape(self, input_shape):
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
    """``elu(concat([x, -x], channels))``: ``[..., C] -> [..., 2C]``."""
    return tf.nn.elu(tf.concat([x, -x], axis=-1))


def _concat_elu_bf16_impl(x: tf.Tensor) -> tf.Tensor:
    return tf.cast(concat_elu(tf.cast(x, tf.float32)), tf.bfloat16)


def _sum_concat_elu_bf16_impl(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    return _concat_elu_bf16_impl(tf.cast(x, tf.float32) + tf.cast(y, tf.float32))


# ``concat_elu`` of x (any float dtype), computed in float32 and written as bfloat16,
# the input of a bfloat16 convolution: [..., C] -> bfloat16 [..., 2C]. One XLA pass
# (read, negate, concat, elu, round) instead of four graph ops and a cast.
concat_elu_bf16 = tf.function(_concat_elu_bf16_impl, jit_compile=True, autograph=False)
# ``concat_elu(x + y)`` likewise, for the gated resnet's sum of conv and auxiliary nin.
sum_concat_elu_bf16 = tf.function(_sum_concat_elu_bf16_impl, jit_compile=True, autograph=False)


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


class Dropout(keras.layers.Layer):
    """Element-wise dropout (inverted: kept values are scaled by 1 / (1 - rate)).

    Same semantics as ``keras.layers.Dropout`` but with a cheaper mask: each 32-bit
    random word from the stateless RNG yields four 8-bit (or two 16-bit) uniform
    levels, which cuts the random-number cost, a visible share of a CPU training
    step, by 2-4x. The keep decision ``level >= rate * levels`` is exact for rates that
    are multiples of 1/256 (0.5 included); other rates are rounded to 1/65536.
    Active only when ``training`` is true. ``[..]`` -> same shape.
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}.")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._per_word = 4 if float(self.rate * 256).is_integer() else 2
        levels = 256 if self._per_word == 4 else 65536
        self._threshold = round(self.rate * levels)
        self._level_dtype = tf.uint8 if self._per_word == 4 else tf.uint16

    def call(self, x: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if not training or self.rate == 0.0:
            return x
        # Stateless RNG ops (also under XLA) want int32 seeds; the generator's are int64.
        seed = tf.cast(tf.math.floormod(self.seed_generator.next(), 2**31 - 2), tf.int32)
        size = tf.size(x)
        words = (size + self._per_word - 1) // self._per_word
        bits = tf.random.stateless_uniform([words], seed, minval=None, maxval=None, dtype=tf.uint32)
        levels = tf.slice(tf.reshape(tf.bitcast(bits, self._level_dtype), [-1]), [0], [size])
        keep = tf.reshape(levels, tf.shape(x)) >= self._threshold
        return x * (tf.cast(keep, x.dtype) * (1.0 / (1.0 - self.rate)))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config


def _gate_impl(x: tf.Tensor, c: tf.Tensor) -> tf.Tensor:
    # c may be bfloat16 (a bfloat16 conv's output): the gate is computed in x's dtype.
    p, q = tf.split(tf.cast(c, x.dtype), 2, axis=-1)
    return x + p * tf.sigmoid(q)


# The gate ``x + p * sigmoid(q)`` of ``(p, q) = split(c)``: ``x`` [B,H,W,F], ``c``
# [B,H,W,2F] -> [B,H,W,F]. Compiled with XLA on its own (also when the model is not):
# the split, sigmoid, product and sum become one pass over memory instead of five, a
# visible share of a CPU step at full resolution; the convolutions around it stay with
# the default (oneDNN) kernels. Inlined when the caller is itself XLA-compiled.
_gate = tf.function(_gate_impl, jit_compile=True, autograph=False)


class GatedResnet(keras.layers.Layer):
    """Gated residual block of PixelCNN++.

    ``c = conv(concat_elu(x), F)``; with an auxiliary input ``a``:
    ``c += nin(concat_elu(a), F)``; ``c = dropout(concat_elu(c))`` (training only);
    ``c = conv(c, 2F, init_scale=0.1)``; ``(p, q) = split(c)``; returns
    ``x + p * sigmoid(q)``. ``x``: ``[B,H,W,F]``; ``a``: ``[B,H,W,C_a]`` or None.

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
        super().__init__(**kwargs)
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}.")
        check_matmul_dtype(matmul_dtype)
        self.filters = int(filters)
        self.use_aux = bool(use_aux)
        self.dropout_rate = float(dropout_rate)
        self.matmul_dtype = matmul_dtype
        self._bf16 = matmul_policy(self.dtype_policy, matmul_dtype) is not self.dtype_policy
        pol = matmul_policy(self.dtype_policy, matmul_dtype)
        self.conv1 = conv(self.filters, name="conv1", dtype=pol)
        self.aux = WNDense(self.filters, name="aux_nin", dtype=pol) if self.use_aux else None
        self.dropout = (
            Dropout(self.dropout_rate, name="dropout", dtype=pol) if self.dropout_rate > 0 else None
        )
        self.conv2 = conv(2 * self.filters, init_scale=0.1, name="conv2", dtype=pol)

    def call(self, x: tf.Tensor, a: tf.Tensor | None = None, training: bool | None = None):
        if self.use_aux != (a is not None):
            raise ValueError(
                f"{self.name} was built with use_aux={self.use_aux} but called with "
                f"a={'None' if a is None else 'a tensor'}."
            )
        if self._bf16:
            # bfloat16 only between the XLA element-wise functions and the matmuls.
            c = self.conv1(concat_elu_bf16(x))
            if a is not None:
                c = sum_concat_elu_bf16(c, self.aux(concat_elu_bf16(a)))
            else:
                c = concat_elu_bf16(c)
        else:
            c = self.conv1(concat_elu(x))
            if a is not None:
                c = c + self.aux(concat_elu(a))
            c = concat_elu(c)
        if self.dropout is not None:
            c = self.dropout(c, training=training)
        return _gate(x, self.conv2(c))

    def compute_output_shape(self, input_shape, a_shape=None):
        return input_shape
