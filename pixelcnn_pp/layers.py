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
* :class:`GatedResnet` is the paper's residual block, with standard dropout.

Variables are kept in float32; the computation runs in the layer's Keras compute dtype
(so a ``mixed_bfloat16`` / ``mixed_float16`` policy works). ``matmul_dtype="bfloat16"``
(see :func:`matmul_precision`) runs only the gated resnets' convolutions and 1x1 layers
in bfloat16 (AMX / AVX512-BF16 CPUs, tensor cores), everything else in float32.

This module is the readable port; :mod:`pixelcnn_pp.fused` runs the same layers with
the element-wise work fused for speed on CPUs.
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
    previous = in_data_dependent_init()
    _DDI_STATE.active = True
    try:
        yield
    finally:
        _DDI_STATE.active = previous


def in_data_dependent_init() -> bool:
    """Whether a :func:`data_dependent_init_scope` is open."""
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


def matmul_policy(dtype_policy: keras.DTypePolicy, matmul_dtype: str) -> keras.DTypePolicy:
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
        inv_norm = tf.math.rsqrt(tf.reduce_sum(tf.square(v), axis=self._norm_axes(), keepdims=True))
        return tf.cast(g * v * inv_norm, self.compute_dtype)

    def bias(self) -> tf.Tensor:
        """b in the compute dtype."""
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
        mean, var = tf.nn.moments(y, axes=list(range(len(y.shape) - 1)))
        scale = self.init_scale * tf.math.rsqrt(var + 1e-10)
        self.g.assign(self.g * scale)
        self.b.assign(self.b - mean * scale)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        if in_data_dependent_init():
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
        return matmul_last_axis(x, self.kernel()) + self.bias()


def matmul_last_axis(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """``[..., C] x [C, F] -> [..., F]``, as one 2-D matmul (the fastest form on CPU)."""
    shape = tf.shape(x)
    y = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), kernel)
    return tf.reshape(y, tf.concat([shape[:-1], [kernel.shape[-1]]], axis=0))


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


class GatedResnet(keras.layers.Layer):
    """Gated residual block of PixelCNN++.

    ``c = conv(concat_elu(x), F)``; with an auxiliary input ``a``:
    ``c += nin(concat_elu(a), F)``; ``c = dropout(concat_elu(c))`` (training only);
    ``c = conv(c, 2F, init_scale=0.1)``; ``(p, q) = split(c)``; returns
    ``x + p * sigmoid(q)``.

    Call: ``block(x, a=None, training=None)`` with ``x`` ``[B,H,W,F]`` and, with
    ``use_aux``, ``a`` ``[B,H,W,C_a]`` -> ``[B,H,W,F]`` in x's dtype.

    Args:
      filters: F, the channel count of x (and of the output).
      conv: the shifted convolution class (``DownShiftedConv2D`` or
        ``DownRightShiftedConv2D``); both convs use its default kernel.
      use_aux: whether the block takes the auxiliary input ``a``.
      dropout_rate: element-wise dropout rate applied in training only.
      matmul_dtype: "float32" (the block's own dtype policy throughout) or "bfloat16"
        (convs and nin in bfloat16, their inputs cast on the way in; x, a and the
        output stay in the block's float32).
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
        policy = matmul_policy(self.dtype_policy, matmul_dtype)
        self.conv1 = conv(self.filters, name="conv1", dtype=policy)
        self.aux = WNDense(self.filters, name="aux_nin", dtype=policy) if self.use_aux else None
        self.dropout = (
            keras.layers.Dropout(self.dropout_rate, name="dropout", dtype=policy)
            if self.dropout_rate > 0
            else None
        )
        self.conv2 = conv(2 * self.filters, init_scale=0.1, name="conv2", dtype=policy)

    def build(self, x_shape, a_shape=None) -> None:
        # The convolutions and the 1x1 layer build on their first call, from the shapes
        # they see. Defined so that Keras does not warn that a layer without a build
        # method has unbuilt sublayers.
        del x_shape, a_shape

    def call(self, x: tf.Tensor, a: tf.Tensor | None = None, training: bool | None = None):
        if self.use_aux != (a is not None):
            raise ValueError(
                f"{self.name} was built with use_aux={self.use_aux} but called "
                f"{'with' if a is not None else 'without'} an auxiliary input."
            )
        c = self.conv1(concat_elu(x))
        if a is not None:
            c = c + self.aux(concat_elu(a))
        c = concat_elu(c)
        if self.dropout is not None:
            c = self.dropout(c, training=training)
        c = tf.cast(self.conv2(c), x.dtype)  # bfloat16 matmuls return bfloat16
        p, q = tf.split(c, 2, axis=-1)
        return x + p * tf.sigmoid(q)

    def compute_output_shape(self, x_shape, a_shape=None):
        return x_shape
