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
"""

from __future__ import annotations

import keras
import tensorflow as tf
from absl import logging

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
    """

    def __init__(
        self,
        nr_resnet: int = 5,
        nr_filters: int = 160,
        nr_logistic_mix: int = 10,
        dropout_rate: float = 0.5,
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
        self._ddi_done = False

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
                self._add(f"up{level}_u{i}", L.GatedResnet, f, u_conv, False, rate)
                self._add(f"up{level}_ul{i}", L.GatedResnet, f, ul_conv, True, rate)
            if level < 2:
                self._add(f"up{level}_u_down", u_conv, f, (2, 3), strides=(2, 2))
                self._add(f"up{level}_ul_down", ul_conv, f, (2, 2), strides=(2, 2))
        # Down pass, levels 0-2 (1/4, 1/2, full resolution): stride-2 transposed convs
        # up to the level, then R pairs at the lowest and R + 1 at the others.
        for level, pairs in enumerate((r, r + 1, r + 1)):
            if level > 0:
                self._add(
                    f"dn{level}_u_up", L.DownShiftedConv2DTranspose, f, (2, 3), strides=(2, 2)
                )
                self._add(
                    f"dn{level}_ul_up", L.DownRightShiftedConv2DTranspose, f, (2, 2), strides=(2, 2)
                )
            for i in range(pairs):
                self._add(f"dn{level}_u{i}", L.GatedResnet, f, u_conv, True, rate)
                self._add(f"dn{level}_ul{i}", L.GatedResnet, f, ul_conv, True, rate)
        self._add("out_nin", L.WNDense, 10 * self.nr_logistic_mix)

    def _add(self, name: str, layer_class: type[keras.layers.Layer], *args, **kwargs) -> None:
        # Every sublayer is a direct attribute (not inside a list): Keras 3 lists are not
        # tracked by tf.train.Checkpoint. Sublayers share the model's precision policy.
        setattr(self, name, layer_class(*args, name=name, dtype=self.dtype_policy, **kwargs))

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

    def call(self, x: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        x = tf.convert_to_tensor(x)
        self._check_input(x)
        x = tf.cast(x, self.compute_dtype)
        # A channel of ones tells the image from the zero padding of shifted convs.
        x = tf.concat([x, tf.ones_like(x[..., :1])], axis=-1)

        u = L.down_shift(self.u_in(x))
        ul = L.down_shift(self.ul_in_up(x)) + L.right_shift(self.ul_in_left(x))
        u_stack, ul_stack = [u], [ul]

        for level in range(3):
            for i in range(self.nr_resnet):
                u = getattr(self, f"up{level}_u{i}")(u, training=training)
                ul = getattr(self, f"up{level}_ul{i}")(ul, u, training=training)
                u_stack.append(u)
                ul_stack.append(ul)
            if level < 2:
                u = getattr(self, f"up{level}_u_down")(u)
                ul = getattr(self, f"up{level}_ul_down")(ul)
                u_stack.append(u)
                ul_stack.append(ul)

        u = u_stack.pop()
        ul = ul_stack.pop()
        for level, pairs in enumerate((self.nr_resnet, self.nr_resnet + 1, self.nr_resnet + 1)):
            if level > 0:
                u = getattr(self, f"dn{level}_u_up")(u)
                ul = getattr(self, f"dn{level}_ul_up")(ul)
            for i in range(pairs):
                u = getattr(self, f"dn{level}_u{i}")(u, u_stack.pop(), training=training)
                ul = getattr(self, f"dn{level}_ul{i}")(
                    ul, tf.concat([u, ul_stack.pop()], axis=-1), training=training
                )
        if u_stack or ul_stack:  # pragma: no cover - structural invariant
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
            "name": self.name,
        }
