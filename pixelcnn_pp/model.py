"""The PixelCNN++ network (Salimans et al., ICLR 2017) as a Keras 3 model.

A two-stream (``u``: pixels above; ``ul``: pixels above and to the left) gated-resnet
network over three resolutions, following the reference TF1 code (openai/pixel-cnn,
``model_spec``): an up pass that keeps every stream output on two stacks and a down pass
that pops them as auxiliary inputs. The output, per pixel, holds the ``10 * M``
parameters of a mixture of M discretized logistics over the RGB triple (see
:mod:`pixelcnn_pp.distributions`). The output at pixel i depends only on input pixels
before i in raster order.

With V, g and b counted, the parameter count equals the reference code's for the same
(R, F, M): 578,760 for R=1, F=32, M=10.

:meth:`PixelCNNpp.call` below is the network as the paper and the reference code
define it. By default the built model runs the same layers through
:func:`pixelcnn_pp.fused.forward` instead (``fused_kernels``), which gives the same
output, faster on CPUs.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from absl import logging

from pixelcnn_pp import fused
from pixelcnn_pp import layers as L


def images_to_model_input(images: tf.Tensor) -> tf.Tensor:
    """uint8 [B, H, W, 3] -> float32 in [-1, 1] (`img / 127.5 - 1`, as the reference)."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


class PixelCNNpp(keras.Model):
    """PixelCNN++ returning discretized-logistic-mixture parameters per pixel.

    Call: ``model(x, training=False)`` with x float ``[B, H, W, 3]`` in [-1, 1]
    (``img / 127.5 - 1``), H and W divisible by 4 -> params float32
    ``[B, H, W, 10 * nr_logistic_mix]``. The first call builds the model; no data-
    dependent initialisation is needed to run it (see :meth:`data_dependent_init`).

    Args:
      nr_resnet: R, gated-resnet pairs per resolution in the up pass (R and R + 1 in
        the down pass).
      nr_filters: F, channels of both streams.
      nr_logistic_mix: M, logistic components per pixel.
      dropout_rate: dropout inside each gated resnet, applied when ``training=True``.
      matmul_dtype: "float32", or "bfloat16" to run the gated resnets' convolutions
        and 1x1 layers and the stride-2 (transposed) convolutions in bfloat16, with
        the streams, the gates, the input layers and the output layer in float32 (see
        :mod:`pixelcnn_pp.layers`); default the enclosing
        ``layers.matmul_precision`` scope's, else "float32". Variables are float32 and
        the same either way, so a checkpoint restores under both.
      fused_kernels: run the built model through :func:`pixelcnn_pp.fused.forward`
        (True) or the plain port below (False); default the enclosing
        ``fused.use_fused_kernels`` scope's, else True. Building and the data-dependent
        initialisation always take the plain pass. The layers and variables are the
        same either way, so a checkpoint restores under both.
    """

    def __init__(
        self,
        nr_resnet: int = 5,
        nr_filters: int = 160,
        nr_logistic_mix: int = 10,
        dropout_rate: float = 0.5,
        matmul_dtype: str | None = None,
        fused_kernels: bool | None = None,
        **kwargs,
    ) -> None:
        kwargs.setdefault("name", "pixelcnn_pp")
        super().__init__(**kwargs)
        for name, value in (
            ("nr_resnet", nr_resnet),
            ("nr_filters", nr_filters),
            ("nr_logistic_mix", nr_logistic_mix),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate!r}.")
        self.nr_resnet = int(nr_resnet)
        self.nr_filters = int(nr_filters)
        self.nr_logistic_mix = int(nr_logistic_mix)
        self.dropout_rate = float(dropout_rate)
        self.matmul_dtype = matmul_dtype or L.default_matmul_dtype()
        L.check_matmul_dtype(self.matmul_dtype)
        self.fused_kernels = (
            fused.fused_by_default() if fused_kernels is None else bool(fused_kernels)
        )
        self._ddi_done = False
        mm = self.matmul_dtype
        # The stride-2 convs read and write the streams in the model's dtype; with
        # bfloat16 matmuls their inputs are cast on the way in, their outputs back.
        mm_policy = L.matmul_policy(self.dtype_policy, mm)

        r, f = self.nr_resnet, self.nr_filters
        rate = self.dropout_rate
        u_conv, ul_conv = L.DownShiftedConv2D, L.DownRightShiftedConv2D

        # Stream inputs.
        self._add("u_in", L.DownShiftedConv2D, f, (2, 3))
        self._add("ul_in_up", L.DownShiftedConv2D, f, (1, 3))
        self._add("ul_in_left", L.DownRightShiftedConv2D, f, (2, 1))
        # Up pass, levels 0-2 (full, 1/2, 1/4 resolution): R pairs each, then stride-2
        # convs down to the next level.
        for level in range(3):
            for i in range(r):
                self._add(f"up{level}_u{i}", L.GatedResnet, f, u_conv, False, rate, mm)
                self._add(f"up{level}_ul{i}", L.GatedResnet, f, ul_conv, True, rate, mm)
            if level < 2:
                self._add(f"up{level}_u_down", u_conv, f, (2, 3), strides=(2, 2), dtype=mm_policy)
                self._add(f"up{level}_ul_down", ul_conv, f, (2, 2), strides=(2, 2), dtype=mm_policy)
        # Down pass, levels 0-2 (1/4, 1/2, full resolution): stride-2 transposed convs
        # up to the level, then R pairs at the lowest and R + 1 at the others.
        for level, pairs in enumerate((r, r + 1, r + 1)):
            if level > 0:
                for stream, layer_class, kernel in (
                    ("u", L.DownShiftedConv2DTranspose, (2, 3)),
                    ("ul", L.DownRightShiftedConv2DTranspose, (2, 2)),
                ):
                    self._add(
                        f"dn{level}_{stream}_up",
                        layer_class,
                        f,
                        kernel,
                        strides=(2, 2),
                        dtype=mm_policy,
                    )
            for i in range(pairs):
                self._add(f"dn{level}_u{i}", L.GatedResnet, f, u_conv, True, rate, mm)
                self._add(f"dn{level}_ul{i}", L.GatedResnet, f, ul_conv, True, rate, mm)
        self._add("out_nin", L.WNDense, 10 * self.nr_logistic_mix)

    def _add(self, name: str, layer_class: type[keras.layers.Layer], *args, **kwargs) -> None:
        # Every sublayer is a direct attribute (not inside a list): Keras 3 lists are not
        # tracked by tf.train.Checkpoint. Sublayers share the model's precision policy
        # unless given one.
        kwargs.setdefault("dtype", self.dtype_policy)
        setattr(self, name, layer_class(*args, name=name, **kwargs))

    # ------------------------------------------------------------------------------
    def _check_input(self, x: tf.Tensor) -> None:
        dtype = tf.as_dtype(x.dtype)
        if not dtype.is_floating:
            raise ValueError(
                f"PixelCNNpp expects float images scaled to [-1, 1] (img / 127.5 - 1), got "
                f"dtype {dtype.name}; convert uint8 images with "
                "tf.cast(img, tf.float32) / 127.5 - 1."
            )
        shape = x.shape
        if shape.rank != 4 or shape[-1] != 3:
            raise ValueError(
                f"PixelCNNpp expects RGB images of shape [batch, height, width, 3], got "
                f"shape {shape}; pass channels-last RGB batches."
            )
        for axis, name in ((1, "height"), (2, "width")):
            if shape[axis] is not None and shape[axis] % 4 != 0:
                raise ValueError(
                    f"PixelCNNpp needs image {name} divisible by 4 (it works at three "
                    f"resolutions), got {name} {shape[axis]} in shape {shape}; crop or pad "
                    "the images to a multiple of 4."
                )

    def _stream(self, name: str, y: tf.Tensor) -> tf.Tensor:
        """Layer ``name`` on a stream, its output in the streams' dtype (a bfloat16-matmul
        resolution change returns bfloat16)."""
        return tf.cast(getattr(self, name)(y), self.compute_dtype)

    def call(self, x: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        x = tf.convert_to_tensor(x)
        self._check_input(x)
        x = tf.cast(x, self.compute_dtype)
        # A channel of ones tells the image from the zero padding of shifted convs.
        x = tf.concat([x, tf.ones_like(x[..., :1])], axis=-1)
        # The same layers with CPU-fused kernels (pixelcnn_pp.fused); the pass that
        # builds the layers and the data-dependent initialisation take the one below.
        if self.fused_kernels and self.out_nin.built and not L.in_data_dependent_init():
            return fused.forward(self, x, training)

        # u sees the rows above, ul the rows above and the pixels to the left. Every
        # stream value goes on a list: the down pass takes them back as auxiliary inputs.
        u_list = [L.down_shift(self.u_in(x))]
        ul_list = [L.down_shift(self.ul_in_up(x)) + L.right_shift(self.ul_in_left(x))]
        for level in range(3):  # up pass: full, 1/2, 1/4 resolution
            for i in range(self.nr_resnet):
                u_list.append(getattr(self, f"up{level}_u{i}")(u_list[-1], training=training))
                ul_list.append(
                    getattr(self, f"up{level}_ul{i}")(ul_list[-1], u_list[-1], training=training)
                )
            if level < 2:
                u_list.append(self._stream(f"up{level}_u_down", u_list[-1]))
                ul_list.append(self._stream(f"up{level}_ul_down", ul_list[-1]))

        u, ul = u_list.pop(), ul_list.pop()
        for level, pairs in enumerate((self.nr_resnet, self.nr_resnet + 1, self.nr_resnet + 1)):
            if level > 0:  # down pass: 1/4, 1/2, full resolution
                u = self._stream(f"dn{level}_u_up", u)
                ul = self._stream(f"dn{level}_ul_up", ul)
            for i in range(pairs):
                u = getattr(self, f"dn{level}_u{i}")(u, u_list.pop(), training=training)
                a = tf.concat([u, ul_list.pop()], axis=-1)
                ul = getattr(self, f"dn{level}_ul{i}")(ul, a, training=training)
        if u_list or ul_list:  # pragma: no cover - structural invariant
            raise AssertionError("PixelCNN++ stacks must be empty after the down pass.")

        out = self.out_nin(tf.nn.elu(ul))
        return tf.cast(out, tf.float32)

    # ------------------------------------------------------------------------------
    def data_dependent_init(self, x, training: bool = True, force: bool = False) -> tf.Tensor:
        """Data-dependent initialisation of every weight-normalised layer on one batch.

        Runs one eager forward pass on ``x`` (float ``[B, H, W, 3]`` in [-1, 1]); each
        layer sets ``g <- g * s`` and ``b <- b - m * s`` with
        ``s = init_scale / sqrt(var + 1e-10)`` from the per-channel moments (m, var) of
        its own pre-activation, then recomputes its output so later layers see
        normalised inputs. As in the reference code the pass runs with dropout
        (``training=True``).

        Call it once on a freshly built (or unbuilt) model, before training and before
        creating optimiser slots or EMA copies; it is not needed after restoring a
        checkpoint (the restored g and b replace it). A second call is a no-op (logged)
        unless ``force=True``.

        Returns:
          The params ``[B, H, W, 10 * M]`` of the initialisation pass.
        """
        if self._ddi_done and not force:
            logging.warning(
                "PixelCNNpp.data_dependent_init already ran on this model; skipping "
                "(pass force=True to re-initialise)."
            )
            return self(x, training=False)
        if not self.built:
            # Build (create variables) first so the initialising pass only re-scales.
            self(x[:1], training=False)
        with L.data_dependent_init_scope():
            out = self(x, training=training)
        self._ddi_done = True
        return out

    def get_config(self) -> dict:
        return {
            "nr_resnet": self.nr_resnet,
            "nr_filters": self.nr_filters,
            "nr_logistic_mix": self.nr_logistic_mix,
            "dropout_rate": self.dropout_rate,
            "matmul_dtype": self.matmul_dtype,
            "fused_kernels": self.fused_kernels,
            "name": self.name,
        }
