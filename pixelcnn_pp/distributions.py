"""Mixture of discretized logistics over RGB pixels: likelihood and sampling.

PixelCNN++ (Salimans et al., ICLR 2017, Sec. 2.1-2.2) models each pixel's RGB triple
as a mixture of M components. Per component, each channel is a logistic discretised
to 256 bins of width 2/255 on [-1, 1]; the G and B means depend linearly on the
(true) R and G values of the same pixel. The formulas follow the reference TF1 code
(openai/pixel-cnn, ``discretized_mix_logistic_loss`` / ``sample_from_...``).

Parameter layout of ``params`` ``[B, H, W, 10 * M]``: the first M channels are the
mixture logits; the remaining 9M, reshaped to ``[B, H, W, 3, 3M]``, hold per colour
channel M means, M log-scales and M coefficient pre-activations.

All computations run in float32 whatever the input dtype.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

_LOG_SCALE_MIN = -7.0
_HALF_BIN = 1.0 / 255.0
_LOG_HALF_RANGE = float(np.log(127.5))


def _split_params(params: tf.Tensor, nr_mix: int):
    """params [..., 10M] -> logits [..., M], means/log_scales/coeffs [..., 3, M]."""
    # split / unstack rather than strided slices: their gradients are cheap concats.
    logits, rest = tf.split(params, [nr_mix, 9 * nr_mix], axis=-1)
    rest = tf.reshape(rest, tf.concat([tf.shape(params)[:-1], [3, 3, nr_mix]], axis=0))
    means, log_scales, coeffs = tf.unstack(rest, num=3, axis=-2)
    log_scales = tf.maximum(log_scales, _LOG_SCALE_MIN)
    coeffs = tf.tanh(coeffs)
    return logits, means, log_scales, coeffs


def _check(x: tf.Tensor, params: tf.Tensor) -> int:
    if x.shape.rank is not None and x.shape[-1] != 3:
        raise ValueError(f"x must be RGB [..., 3] in [-1, 1], got shape {x.shape}.")
    channels = params.shape[-1]
    if channels is None or channels % 10 != 0 or channels == 0:
        raise ValueError(
            f"params must have 10 * M channels (M logistic components), got shape "
            f"{params.shape}; pass the output of PixelCNNpp."
        )
    return channels // 10


def _channel_log_probs(x, mean, log_scale_raw):
    """Log-probability of one colour channel's 8-bit value under each component.

    Args:
      x: ``[..., 1]`` values in [-1, 1].
      mean: ``[..., M]`` component means (already colour-coupled).
      log_scale_raw: ``[..., M]`` log-scales before the clamp at -7.

    Returns:
      ``[..., M]``: the reference's three branches (value 0, value 255, interior bin
      with its bin-centre density fallback), from 3 exps, 1 tanh and 1 log instead of
      the reference's 2 sigmoids, 3 softpluses and a log.
    """
    log_s = tf.maximum(log_scale_raw, _LOG_SCALE_MIN)
    inv_s = tf.exp(-log_s)
    centred = x - mean
    mid = inv_s * centred
    # The logistic is symmetric: with m = |mid|, t = e^-m <= 1 and the half bin width
    # d = inv_s / 255 (<= e^7 / 255), e^(+-d) and t e^(+-d) cannot overflow.
    m = tf.abs(mid)
    t = tf.exp(-m)
    d = inv_s * _HALF_BIN
    e = tf.exp(d)
    inv_e = 1.0 / e
    near = 1.0 + t * e
    far = 1.0 + t * inv_e
    # sigmoid(mid + d) - sigmoid(mid - d) = 2 sinh(d) t / ((1 + t e^d)(1 + t e^-d));
    # 2 sinh(d) = tanh(d) (e^d + e^-d) keeps thin bins (small d) free of cancellation.
    cdf_delta = tf.tanh(d) * (e + inv_e) * t / (near * far)
    use_cdf = cdf_delta > 1e-5
    lowest = x < -0.999
    interior = tf.logical_not(tf.logical_or(lowest, x > 0.999))
    # Value 0 is log sigmoid(mid + d), value 255 log sigmoid(d - mid): for the side away
    # from the mean that is -log(1 + t e^-d), for the other d - m - log(1 + t e^d).
    away = tf.where(lowest, centred, -centred) >= 0.0
    # One log serves all branches: log(cdf_delta), log(1 + t) in the bin-centre density
    # (mid - 2 softplus(mid) = -m - 2 log(1 + t)) and the tails' log terms.
    log_arg = tf.math.log(
        tf.where(interior, tf.where(use_cdf, cdf_delta, 1.0 + t), tf.where(away, far, near))
    )
    log_pdf_mid = -(m + log_s + _LOG_HALF_RANGE) - 2.0 * log_arg
    log_tail = tf.where(away, 0.0, d - m) - log_arg
    return tf.where(interior, tf.where(use_cdf, log_arg, log_pdf_mid), log_tail)


# XLA fuses the element-wise chains of each channel into a few loops (about 2x faster
# than separate TF kernels on CPU, forward and backward); the [..., M] per-channel
# layout avoids the [..., 3, M] reductions and transposes XLA is slow at on CPU.
@tf.function(jit_compile=True, autograph=False)
def _pixel_log_likelihood(x, params):
    nr_mix = params.shape[-1] // 10
    # [..., 10, M]: block 0 the logits, then per colour mean, log-scale, coefficient.
    blocks = tf.reshape(params, tf.concat([tf.shape(params)[:-1], [10, nr_mix]], axis=0))
    logits, mean_r, ls_r, c_rg, mean_g, ls_g, c_rb, mean_b, ls_b, c_gb = tf.unstack(
        blocks, num=10, axis=-2
    )
    r, g, b = tf.unstack(x[..., None], num=3, axis=-2)  # [..., 1], broadcast over M
    # Colour coupling on the true (conditioning) R and G.
    mean_g = mean_g + tf.tanh(c_rg) * r
    mean_b = mean_b + tf.tanh(c_rb) * r + tf.tanh(c_gb) * g
    log_probs = (
        _channel_log_probs(r, mean_r, ls_r)
        + _channel_log_probs(g, mean_g, ls_g)
        + _channel_log_probs(b, mean_b, ls_b)
    )
    # log_softmax(logits) folded in: the normaliser is subtracted once per pixel.
    return tf.reduce_logsumexp(log_probs + logits, axis=-1) - tf.reduce_logsumexp(logits, axis=-1)


def pixel_log_likelihood(x, params) -> tf.Tensor:
    """Per-pixel joint RGB log-likelihood ``log p(x_i | x_<i)`` in nats.

    Args:
      x: float ``[B, H, W, 3]`` in [-1, 1] (``img / 127.5 - 1``); the conditioning
        (true) values used in the colour coupling.
      params: ``[B, H, W, 10 * M]`` network output (broadcastable against x's leading
        axes, e.g. ``[1, 1, 1, 10M]`` or ``[N, 1, 1, 10M]``).

    Returns:
      float32 ``[B, H, W]`` log-probabilities of the 8-bit RGB values.
    """
    x = tf.cast(tf.convert_to_tensor(x), tf.float32)
    params = tf.cast(tf.convert_to_tensor(params), tf.float32)
    _check(x, params)
    return _pixel_log_likelihood(x, params)


def discretized_mix_logistic_loss(x, params) -> tf.Tensor:
    """Summed negative log-likelihood (nats) of a batch: ``-sum(pixel_log_likelihood)``.

    Args:
      x: float ``[B, H, W, 3]`` in [-1, 1].
      params: ``[B, H, W, 10 * M]``.

    Returns:
      float32 scalar, the training loss of the reference code.
    """
    return -tf.reduce_sum(pixel_log_likelihood(x, params))


def bits_per_dim(nll_sum, num_pixels_times_channels):
    """Converts a summed NLL in nats to bits per dimension: ``nll / (n * ln 2)``.

    Args:
      nll_sum: scalar summed negative log-likelihood in nats (a tensor, or a Python or
        NumPy number).
      num_pixels_times_channels: number of sub-pixels it sums over (B * H * W * 3).

    Returns:
      A float32 scalar tensor where either argument is a tensor, else a Python float
      (computed in float64, for running sums kept on the host).
    """
    if tf.is_tensor(nll_sum) or tf.is_tensor(num_pixels_times_channels):
        return tf.cast(nll_sum, tf.float32) / (
            tf.cast(num_pixels_times_channels, tf.float32) * math.log(2.0)
        )
    return float(nll_sum) / (float(num_pixels_times_channels) * math.log(2.0))


def sample_from_discretized_mix_logistic(params, seed: int | None = None) -> tf.Tensor:
    """Draws one RGB value per pixel from the mixture (independently across pixels).

    Gumbel-max picks a component; each channel then gets a logistic sample with that
    component's mean and scale, the G and B means shifted by the coefficients times the
    already *sampled* R (and G), each clipped to [-1, 1].

    Args:
      params: ``[B, H, W, 10 * M]``.
      seed: optional integer for reproducible draws (stateless RNG).

    Returns:
      float32 ``[B, H, W, 3]`` in [-1, 1] (continuous; quantise with
      ``round((x + 1) * 127.5)`` for 8-bit values).
    """
    params = tf.cast(tf.convert_to_tensor(params), tf.float32)
    channels = params.shape[-1]
    if channels is None or channels % 10 != 0 or channels == 0:
        raise ValueError(f"params must have 10 * M channels, got shape {params.shape}.")
    nr_mix = channels // 10
    logits, means, log_scales, coeffs = _split_params(params, nr_mix)
    shape = tf.shape(logits)
    if seed is None:
        seed = int(np.random.default_rng().integers(0, 2**31 - 1))
    seeds = tf.random.experimental.stateless_split(tf.constant([seed, 0], tf.int64), 2)
    u_mix = tf.random.stateless_uniform(shape, seeds[0], minval=1e-5, maxval=1.0 - 1e-5)
    choice = tf.argmax(logits - tf.math.log(-tf.math.log(u_mix)), axis=-1)
    sel = tf.one_hot(choice, nr_mix, dtype=tf.float32)[..., None, :]  # [..., 1, M]
    mu = tf.reduce_sum(means * sel, axis=-1)  # [..., 3]
    log_s = tf.reduce_sum(log_scales * sel, axis=-1)
    c_rg, c_rb, c_gb = tf.unstack(tf.reduce_sum(coeffs * sel, axis=-1), num=3, axis=-1)
    u = tf.random.stateless_uniform(tf.shape(mu), seeds[1], minval=1e-5, maxval=1.0 - 1e-5)
    v = mu + tf.exp(log_s) * (tf.math.log(u) - tf.math.log(1.0 - u))
    v_r, v_g, v_b = tf.unstack(v, num=3, axis=-1)
    # The coupling uses the sampled (clipped) R and G.
    x0 = tf.clip_by_value(v_r, -1.0, 1.0)
    x1 = tf.clip_by_value(v_g + c_rg * x0, -1.0, 1.0)
    x2 = tf.clip_by_value(v_b + c_rb * x0 + c_gb * x1, -1.0, 1.0)
    return tf.stack([x0, x1, x2], axis=-1)
