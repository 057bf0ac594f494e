"""Tests of the discretized logistic mixture (pixelcnn_pp.distributions).

The reference below is an independent float64 NumPy transcription of the likelihood in
PixelCNN++ (Salimans et al., ICLR 2017, Sec. 2.1-2.2) with the reference code's edge
cases (values 0 and 255, log-scale clamp at -7, the 1e-5 bin-probability threshold).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from pixelcnn_pp import distributions as D


# --------------------------------------------------------------------------------------
# Independent NumPy reference (float64).
def _log_sigmoid(z):
    return -np.logaddexp(0.0, -z)


def _softplus(z):
    return np.logaddexp(0.0, z)


def numpy_pixel_log_likelihood(x: np.ndarray, params: np.ndarray) -> np.ndarray:
    """x [..., 3] in [-1, 1], params [..., 10M] -> log p [...], all float64."""
    x = np.asarray(x, np.float64)
    params = np.asarray(params, np.float64)
    m = params.shape[-1] // 10
    lead = params.shape[:-1]
    logits = params[..., :m]
    per_channel = params[..., m:].reshape(*lead, 3, 3 * m)
    mu = per_channel[..., 0:m].copy()  # [..., 3, M]
    log_s = np.maximum(per_channel[..., m : 2 * m], -7.0)
    coef = np.tanh(per_channel[..., 2 * m : 3 * m])
    red, green = x[..., 0:1], x[..., 1:2]
    mu[..., 1, :] += coef[..., 0, :] * red
    mu[..., 2, :] += coef[..., 1, :] * red + coef[..., 2, :] * green

    v = x[..., :, None]
    z_hi = (v - mu + 1.0 / 255.0) * np.exp(-log_s)
    z_lo = (v - mu - 1.0 / 255.0) * np.exp(-log_s)
    z_mid = (v - mu) * np.exp(-log_s)
    bin_prob = np.exp(_log_sigmoid(z_hi)) - np.exp(_log_sigmoid(z_lo))
    with np.errstate(divide="ignore"):
        log_bin = np.log(np.maximum(bin_prob, 1e-12))
    log_centre_density = z_mid - log_s - 2.0 * _softplus(z_mid) - math.log(127.5)
    inner = np.where(bin_prob > 1e-5, log_bin, log_centre_density)
    lowest = _log_sigmoid(z_hi)  # value 0: all mass below the upper edge
    highest = _log_sigmoid(-z_lo)  # value 255: all mass above the lower edge
    per_channel_lp = np.where(v < -0.999, lowest, np.where(v > 0.999, highest, inner))
    log_mix = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    comp = per_channel_lp.sum(axis=-2) + log_mix
    return np.logaddexp.reduce(comp, axis=-1)


def _random_params(rng, shape, m, log_scale=(-3.0, 0.5), coef_scale=1.0):
    params = np.zeros((*shape, 10 * m))
    params[..., :m] = rng.normal(0, 2, (*shape, m))
    rest = np.zeros((*shape, 3, 3 * m))
    rest[..., :m] = rng.uniform(-1.2, 1.2, (*shape, 3, m))
    rest[..., m : 2 * m] = rng.uniform(*log_scale, (*shape, 3, m))
    rest[..., 2 * m :] = rng.normal(0, coef_scale, (*shape, 3, m))
    params[..., m:] = rest.reshape(*shape, 9 * m)
    return params


def _random_images(rng, shape):
    values = rng.integers(0, 256, (*shape, 3))
    # Make sure both edge values appear in every channel.
    values.reshape(-1, 3)[:2] = [[0, 255, 0], [255, 0, 255]]
    return values / 127.5 - 1.0


def previous_pixel_log_likelihood(x, params, dtype=tf.float64):
    """Plain TF transcription of the original formula (sigmoid/softplus form)."""
    x = tf.cast(x, dtype)
    params = tf.cast(params, dtype)
    m = params.shape[-1] // 10
    logits, rest = tf.split(params, [m, 9 * m], axis=-1)
    rest = tf.reshape(rest, tf.concat([tf.shape(params)[:-1], [3, 3, m]], axis=0))
    means, log_scales, coeffs = tf.unstack(rest, num=3, axis=-2)
    log_scales = tf.maximum(log_scales, -7.0)
    coeffs = tf.tanh(coeffs)
    xc = x[..., :, None]
    r, g, _ = tf.unstack(xc, num=3, axis=-2)
    mean_r, mean_g, mean_b = tf.unstack(means, num=3, axis=-2)
    c_rg, c_rb, c_gb = tf.unstack(coeffs, num=3, axis=-2)
    mean_g = mean_g + c_rg * r
    mean_b = mean_b + c_rb * r + c_gb * g
    means = tf.stack([tf.broadcast_to(mean_r, tf.shape(mean_b)), mean_g, mean_b], axis=-2)
    centred = xc - means
    inv_s = tf.exp(-log_scales)
    plus_in = inv_s * (centred + 1.0 / 255.0)
    min_in = inv_s * (centred - 1.0 / 255.0)
    cdf_delta = tf.sigmoid(plus_in) - tf.sigmoid(min_in)
    log_cdf_plus = plus_in - tf.nn.softplus(plus_in)
    log_one_minus_cdf_min = -tf.nn.softplus(min_in)
    mid_in = inv_s * centred
    log_pdf_mid = mid_in - log_scales - 2.0 * tf.nn.softplus(mid_in) - math.log(127.5)
    log_inner = tf.where(cdf_delta > 1e-5, tf.math.log(tf.maximum(cdf_delta, 1e-12)), log_pdf_mid)
    log_probs = tf.where(
        xc < -0.999, log_cdf_plus, tf.where(xc > 0.999, log_one_minus_cdf_min, log_inner)
    )
    log_probs = tf.reduce_sum(log_probs, axis=-2) + tf.nn.log_softmax(logits, axis=-1)
    return tf.reduce_logsumexp(log_probs, axis=-1)


def _mixed_cases(rng):
    """Random params from wide to clamped (-7 and below) scales, many 0 / 255 values."""
    for log_scale, coef_scale in [((-3.0, 0.5), 1.0), ((-9.0, -6.0), 8.0), ((-7.5, 6.0), 2.0)]:
        params = _random_params(rng, (3, 8, 8), 10, log_scale=log_scale, coef_scale=coef_scale)
        x = _random_images(rng, (3, 8, 8))
        x.reshape(-1, 3)[2:60] = rng.choice([-1.0, 1.0], size=(58, 3))
        yield x.astype(np.float32), params.astype(np.float32)


def test_matches_the_previous_formula(rng):
    for x, params in _mixed_cases(rng):
        got = D.pixel_log_likelihood(x, params).numpy()
        exact = previous_pixel_log_likelihood(x, params, tf.float64).numpy()
        old32 = previous_pixel_log_likelihood(x, params, tf.float32).numpy()
        # Both branches of the 1e-5 threshold are exercised.
        assert np.all(np.isfinite(got))
        # Within round-off of the formula evaluated in float64, and no further from it
        # than the float32 evaluation of the original code.
        tol = 1e-4 + 1e-6 * np.abs(exact)
        assert np.max(np.abs(got - exact) - tol) < 0, np.max(np.abs(got - exact))
        assert np.max(np.abs(got - exact)) <= np.max(np.abs(old32 - exact)) + 1e-4


def test_thin_bins_use_the_bin_centre_density(rng):
    # Wide components: every interior bin holds < 1e-5 of the mass.
    params = _random_params(rng, (1, 4, 4), 3, log_scale=(6.0, 7.0)).astype(np.float32)
    x = _random_images(rng, (1, 4, 4)).astype(np.float32)
    got = D.pixel_log_likelihood(x, params).numpy()
    want = previous_pixel_log_likelihood(x, params, tf.float64).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_gradients_match_the_previous_formula(rng):
    for x, params in _mixed_cases(rng):
        p = tf.constant(params)
        p64 = tf.constant(params, tf.float64)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([p, p64])
            loss = D.discretized_mix_logistic_loss(x, p)
            ref = -tf.reduce_sum(previous_pixel_log_likelihood(x, p64, tf.float64))
        got = tape.gradient(loss, p).numpy()
        want = tape.gradient(ref, p64).numpy()
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)


# --------------------------------------------------------------------------------------
def test_matches_numpy_reference_on_random_params(rng):
    m = 5
    params = _random_params(rng, (2, 6, 5), m)
    x = _random_images(rng, (2, 6, 5))
    got = D.pixel_log_likelihood(x.astype(np.float32), params.astype(np.float32)).numpy()
    want = numpy_pixel_log_likelihood(x.astype(np.float32), params.astype(np.float32))
    assert got.shape == (2, 6, 5)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_matches_numpy_reference_on_extreme_params(rng):
    m = 4
    shape = (3, 8, 8)
    params = _random_params(rng, shape, m, log_scale=(-9.0, -6.0), coef_scale=8.0)
    x = _random_images(rng, shape)
    x.reshape(-1, 3)[2:40] = rng.choice([-1.0, 1.0], size=(38, 3))  # many 0 / 255 values
    got = D.pixel_log_likelihood(x.astype(np.float32), params.astype(np.float32)).numpy()
    want = numpy_pixel_log_likelihood(x.astype(np.float32), params.astype(np.float32))
    # The tiny scales push most bins through the bin-centre density branch.
    assert want.min() < -100.0
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-2)


def test_edge_values_use_the_tails():
    # One component centred at 0 with scale 1: value 0 (x = -1) gets the whole lower
    # tail, log sigmoid((-1 + 1/255) / 1); value 255 gets the whole upper tail.
    m = 1
    params = np.zeros((1, 1, 2, 10 * m), np.float32)
    x = np.array([[[[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]]], np.float32)
    got = D.pixel_log_likelihood(x, params).numpy()[0, 0]
    lower = 3 * _log_sigmoid(-1.0 + 1.0 / 255.0)
    upper = 3 * _log_sigmoid(-1.0 + 1.0 / 255.0)  # symmetric
    np.testing.assert_allclose(got, [lower, upper], rtol=1e-5)


def test_log_scales_are_clamped_at_minus_seven(rng):
    m = 3
    params = _random_params(rng, (1, 2, 2), m, log_scale=(-7.0, -7.0))
    x = _random_images(rng, (1, 2, 2)).astype(np.float32)
    rest = params[..., m:].reshape(1, 2, 2, 3, 3 * m)
    rest[..., m : 2 * m] = -20.0  # far below the clamp
    below = np.concatenate([params[..., :m], rest.reshape(1, 2, 2, 9 * m)], axis=-1)
    clamped = D.pixel_log_likelihood(x, params.astype(np.float32)).numpy()
    deeper = D.pixel_log_likelihood(x, below.astype(np.float32)).numpy()
    np.testing.assert_array_equal(clamped, deeper)


def test_colour_coupling_uses_true_red_and_green():
    # Means 0, tiny scale, coefficient tanh(c) = 0.5 on R for G: the G channel is most
    # likely at 0.5 * R, so the triple (R, 0.5 R, .) beats (R, 0, .).
    m = 1
    rest = np.zeros((3, 3))
    rest[:, 1] = -5.0  # log-scales
    rest[0, 2] = np.arctanh(0.5)  # coefficient of R in the G mean
    params = np.concatenate([[0.0], rest.reshape(-1)]).astype(np.float32)
    params = np.broadcast_to(params, (1, 1, 2, 10 * m))
    r = 100 / 127.5 - 1.0
    g_coupled = round((0.5 * r + 1.0) * 127.5) / 127.5 - 1.0
    x = np.array([[[[r, g_coupled, 0.0], [r, 0.0, 0.0]]]], np.float32)
    x[..., 2] = 127 / 127.5 - 1.0
    got = D.pixel_log_likelihood(x, params).numpy()[0, 0]
    assert got[0] > got[1] + 10.0
    np.testing.assert_allclose(got, numpy_pixel_log_likelihood(x, params)[0, 0], rtol=1e-5)


@pytest.mark.slow
def test_probabilities_of_all_rgb_values_sum_to_one(rng):
    # Components from narrow (about one bin) to wide, with strong colour coupling.
    m = 4
    params = _random_params(rng, (1, 1, 1), m, log_scale=(-5.0, 0.5), coef_scale=2.0)
    params = params.astype(np.float32)
    levels = tf.range(256, dtype=tf.float32) / 127.5 - 1.0
    # For one fixed red value, all 256 x 256 (G, B) pairs form one chunk.
    gg, bb = tf.meshgrid(levels, levels, indexing="ij")
    gb = tf.reshape(tf.stack([gg, bb], axis=-1), [-1, 1, 1, 2])

    @tf.function
    def chunk_mass(red):
        rgb = tf.concat([tf.fill([65536, 1, 1, 1], red), gb], axis=-1)
        return tf.reduce_sum(tf.exp(tf.cast(D.pixel_log_likelihood(rgb, params), tf.float64)))

    total = sum(float(chunk_mass(levels[r])) for r in range(256))
    assert abs(total - 1.0) < 1e-3, total


def test_loss_is_minus_sum_of_map(rng):
    params = _random_params(rng, (2, 4, 4), 10).astype(np.float32)
    x = _random_images(rng, (2, 4, 4)).astype(np.float32)
    loss = D.discretized_mix_logistic_loss(x, params)
    log_map = D.pixel_log_likelihood(x, params)
    assert loss.shape == ()
    np.testing.assert_allclose(float(loss), -float(tf.reduce_sum(log_map)), rtol=1e-6)


def test_low_precision_inputs_are_computed_in_float32(rng):
    params = _random_params(rng, (1, 4, 4), 10)
    x = _random_images(rng, (1, 4, 4))
    got = D.pixel_log_likelihood(tf.cast(x, tf.bfloat16), tf.cast(params, tf.bfloat16))
    assert got.dtype == tf.float32
    want = numpy_pixel_log_likelihood(
        tf.cast(tf.cast(x, tf.bfloat16), tf.float64).numpy(),
        tf.cast(tf.cast(params, tf.bfloat16), tf.float64).numpy(),
    )
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4)


def test_bits_per_dim():
    nll = 3.0 * 64 * 64 * 3 * math.log(2.0)
    np.testing.assert_allclose(float(D.bits_per_dim(nll, 64 * 64 * 3)), 3.0, rtol=1e-6)


def test_sampling_picks_components_by_their_weights_and_couples_colours():
    # Two components far apart with tiny scales: component 0 (p = 0.3) at R = -0.5,
    # component 1 (p = 0.7) at R = 0.5; G mean gets tanh(c) * sampled R (c: 0.8).
    m = 2
    logits = np.log([0.3, 0.7])
    rest = np.zeros((3, 3 * m))
    rest[0, :m] = [-0.5, 0.5]
    rest[:, m : 2 * m] = -7.0
    rest[0, 2 * m : 3 * m] = np.arctanh(0.8)
    params = np.concatenate([logits, rest.reshape(-1)]).astype(np.float32)
    params = np.broadcast_to(params, (4, 50, 50, 10 * m))
    sample = D.sample_from_discretized_mix_logistic(params, seed=3).numpy()
    assert sample.shape == (4, 50, 50, 3)
    assert sample.min() >= -1.0 and sample.max() <= 1.0
    red = sample[..., 0]
    assert np.all(np.minimum(np.abs(red - 0.5), np.abs(red + 0.5)) < 0.05)
    assert abs(np.mean(red > 0) - 0.7) < 0.02
    np.testing.assert_allclose(sample[..., 1], 0.8 * red, atol=0.05)
    again = D.sample_from_discretized_mix_logistic(params, seed=3).numpy()
    np.testing.assert_array_equal(sample, again)


def test_samples_are_clipped_to_the_value_range():
    rest = np.zeros((3, 3))
    rest[:, 0] = 5.0  # means far above 1
    params = np.concatenate([[0.0], rest.reshape(-1)]).astype(np.float32)
    sample = D.sample_from_discretized_mix_logistic(np.broadcast_to(params, (1, 4, 4, 10)), 0)
    np.testing.assert_array_equal(sample.numpy(), np.ones((1, 4, 4, 3), np.float32))


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match="10 \\* M channels"):
        D.pixel_log_likelihood(np.zeros((1, 2, 2, 3), np.float32), np.zeros((1, 2, 2, 7)))
    with pytest.raises(ValueError, match="RGB"):
        D.pixel_log_likelihood(np.zeros((1, 2, 2, 4), np.float32), np.zeros((1, 2, 2, 10)))
    with pytest.raises(ValueError, match="10 \\* M channels"):
        D.sample_from_discretized_mix_logistic(np.zeros((1, 2, 2, 15), np.float32))
