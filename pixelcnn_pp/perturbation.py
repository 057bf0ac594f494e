"""Random value replacement: the training data of a background model.

Ren et al. (NeurIPS 2019, "Likelihood Ratios for Out-of-Distribution Detection") train
a second, "background" model on inputs perturbed so that their semantic content is
partly destroyed while low-level statistics survive; the ratio of the two models'
likelihoods then cancels what both capture (smoothness, colour statistics) and keeps
what only the model of clean data finds likely. For images they replace each value
x_d (here every channel of every pixel) independently with probability `rate` by a
uniform random value in [0, 255].

The replacement of the k-th image of a stream depends only on (seed, k), so a resumed
or sharded run perturbs every image exactly as an uninterrupted one does.
"""

from __future__ import annotations

import tensorflow as tf


def replace_values(images: tf.Tensor, rate: float, seed: tf.Tensor) -> tf.Tensor:
    """Replaces each value of uint8 `images` by a uniform one with probability `rate`.

    Args:
      images: uint8 [..., H, W, C].
      rate: replacement probability in [0, 1).
      seed: int64 [2], the stateless random seed.

    Returns:
      uint8, the shape of `images`.
    """
    if rate <= 0.0:
        return images
    # One draw decides both: u < rate replaces, and u / rate is then uniform in [0, 1).
    u = tf.random.stateless_uniform(tf.shape(images), seed=seed, dtype=tf.float32)
    replacement = tf.cast(tf.minimum(tf.floor(u / rate * 256.0), 255.0), tf.uint8)
    return tf.where(u < rate, replacement, images)


def perturb_stream(
    images: tf.data.Dataset, rate: float, seed: int, start_example: int = 0
) -> tf.data.Dataset:
    """A stream of uint8 images [H, W, C] with `replace_values` applied to each.

    Args:
      images: the stream, one image per element, whose first element is example
        `start_example` of the endless stream.
      rate: replacement probability (0: the stream unchanged).
      seed: base seed; image k is perturbed with the stateless seed (seed, k).
      start_example: the global index of the stream's first element.
    """
    if rate <= 0.0:
        return images

    def perturb(index: tf.Tensor, image: tf.Tensor) -> tf.Tensor:
        stateless_seed = tf.stack([tf.constant(seed, tf.int64), index])
        return replace_values(image, rate, stateless_seed)

    return images.enumerate(start=start_example).map(
        perturb, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
