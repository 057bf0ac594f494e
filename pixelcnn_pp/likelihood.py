"""Per-pixel log-likelihood maps from a trained UBM (the detector's input features).

Khodabakhsh & Busch (BIOSIG 2020) feed the conditional log-likelihood of every pixel
given the pixels before it, `log p(x_i | x_<i)`, computed by the PixelCNN++ UBM, to a
small CNN. This module restores the UBM of a run folder (`run_folder`: config.json
and checkpoints; its Polyak-averaged weights, as the reference PixelCNN++ code
evaluates) and turns uint8 face crops into `[N, H, W]` float32 maps (nats) and image
log-likelihoods (their sums), with dropout off. It imports nothing of `training`.
"""

from __future__ import annotations

import os
import weakref

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from pixelcnn_pp import run_folder
from pixelcnn_pp.distributions import pixel_log_likelihood
from pixelcnn_pp.ema import PolyakAverage
from pixelcnn_pp.model import images_to_model_input
from pixelcnn_pp.run_folder import latest_checkpoint
from pixelcnn_pp.strategies import precision_policy

__all__ = ["compiled_likelihood_fn", "latest_checkpoint", "likelihood_maps", "load_ubm"]

# Compiled likelihood functions per model (one trace per model and batch shape).
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def load_ubm(ubm_dir: str, checkpoint: str | None = None) -> keras.Model:
    """Rebuilds the UBM of a train_ubm folder with its averaged (EMA) weights.

    Args:
      ubm_dir: the folder train_ubm wrote (config.json, checkpoints/).
      checkpoint: a specific checkpoint path; default the latest one.

    Returns:
      A float32 PixelCNNpp whose trainable weights are the Polyak averages; call it
      with `training=False`. Its `ubm_config` attribute holds the UBMConfig and
      `ubm_checkpoint` the checkpoint path.

    Raises:
      FileNotFoundError: no config.json or no checkpoint ("run train_ubm first").
    """
    if not os.path.isdir(ubm_dir):
        raise FileNotFoundError(f"UBM folder {ubm_dir!r} does not exist: run train_ubm first.")
    saved = run_folder.read_run_config(ubm_dir)
    config = run_folder.ubm_config_from_dict(saved["ubm"])
    path = checkpoint or latest_checkpoint(ubm_dir)
    with precision_policy("float32"):
        model = run_folder.build_model(config)
    ema = PolyakAverage(model.trainable_variables, config.ema_decay)
    holder = run_folder.model_variables_tracker(model)
    status = tf.train.Checkpoint(model=holder, ema=ema).restore(path)
    status.expect_partial().assert_existing_objects_matched()
    ema.copy_to(model.trainable_variables)
    model.ubm_config = config
    model.ubm_checkpoint = path
    logging.info("Loaded UBM %s (EMA weights).", path)
    return model


def _validate_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(
            f"likelihood_maps expects uint8 face crops, got dtype {images.dtype}: pass the "
            "crops as stored (0..255), not scaled floats."
        )
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"likelihood_maps expects RGB crops of shape [N, H, W, 3], got {list(images.shape)}."
        )
    height, width = images.shape[1:3]
    if height % 4 or width % 4 or height == 0 or width == 0:
        raise ValueError(
            f"Crop size {height}x{width} is not a positive multiple of 4, which PixelCNN++ "
            "needs: crop the faces to e.g. 64x64."
        )
    return images


def compiled_likelihood_fn(model: keras.Model, jit_compile: bool = False):
    """A compiled function: uint8 [B, H, W, 3] -> per-pixel log-likelihood [B, H, W].

    Cached per model (and XLA setting), so repeated calls reuse one trace per shape.
    """
    cache = _COMPILED.setdefault(model, {})
    if jit_compile not in cache:

        def maps(images: tf.Tensor) -> tf.Tensor:
            x = images_to_model_input(images)
            return pixel_log_likelihood(x, model(x, training=False))

        cache[jit_compile] = tf.function(maps, jit_compile=jit_compile, autograph=False)
    return cache[jit_compile]


def likelihood_maps(
    model: keras.Model,
    images: np.ndarray,
    batch_size: int = 64,
    *,
    jit_compile: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel and image log-likelihoods of uint8 face crops under the UBM.

    Batches are padded to `batch_size` so that one compiled trace serves them all.

    Args:
      model: a PixelCNNpp (e.g. from `load_ubm`); evaluated with dropout off.
      images: uint8 [N, H, W, 3] RGB crops, H and W multiples of 4.
      batch_size: crops per forward pass.
      jit_compile: compile the forward pass and likelihood with XLA.

    Returns:
      (maps float32 [N, H, W] in nats, image log-likelihoods float32 [N] = map sums).

    Raises:
      ValueError: wrong dtype or shape, or a bad batch size.
    """
    images = _validate_images(images)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    count, height, width = images.shape[:3]
    maps = np.empty((count, height, width), np.float32)
    if count:
        fn = compiled_likelihood_fn(model, jit_compile)
        batch = min(batch_size, count)
        for start in range(0, count, batch):
            chunk = images[start : start + batch]
            real = chunk.shape[0]
            if real < batch:  # pad to the traced shape
                chunk = np.concatenate(
                    [chunk, np.zeros((batch - real, *chunk.shape[1:]), np.uint8)]
                )
            maps[start : start + real] = fn(tf.constant(chunk)).numpy()[:real]
    return maps, maps.sum(axis=(1, 2), dtype=np.float64).astype(np.float32)
