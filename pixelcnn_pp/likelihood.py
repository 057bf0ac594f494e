"""Per-pixel log-likelihood maps from a trained UBM (the detector's input features).

Khodabakhsh & Busch (BIOSIG 2020) feed the conditional log-likelihood of every pixel
given the pixels before it, `log p(x_i | x_<i)`, computed by the PixelCNN++ UBM, to a
small CNN. This module restores the UBM of a run folder (`run_folder`: config.json
and checkpoints; its Polyak-averaged weights, as the reference PixelCNN++ code
evaluates) and turns uint8 face crops into `[N, H, W]` float32 maps (nats) and image
log-likelihoods (their sums), with dropout off. It imports nothing of `training`.

The network may compute in bfloat16 or float16 (`mixed_precision`), or only its
convolutions in bfloat16 with everything else float32 (`matmul_dtype`, see
`layers`); its output is cast to float32 before the discretized-logistic mixture
likelihood, so the maps are always float32. `compare_precisions` measures how far such
maps are from float32 ones (both from the same checkpoint).
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from pixelcnn_pp import fused, layers, run_folder
from pixelcnn_pp.distributions import pixel_log_likelihood
from pixelcnn_pp.ema import PolyakAverage
from pixelcnn_pp.model import images_to_model_input
from pixelcnn_pp.run_folder import latest_checkpoint
from pixelcnn_pp.strategies import MIXED_PRECISION_POLICIES, precision_policy

__all__ = [
    "batch_likelihood_fn",
    "compare_precisions",
    "compiled_likelihood_fn",
    "latest_checkpoint",
    "likelihood_maps",
    "load_ubm",
]

# uint8 [N, H, W, 3] -> (maps float32 [N, H, W] nats, image log-likelihoods float32 [N])
BatchLikelihoodFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

# Compiled likelihood functions per model (one trace per model and batch shape).
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def load_ubm(
    ubm_dir: str,
    checkpoint: str | None = None,
    *,
    mixed_precision: str = "",
    strategy: tf.distribute.Strategy | None = None,
    matmul_dtype: str = "float32",
) -> keras.Model:
    """Rebuilds the UBM of a train_ubm folder with its averaged (EMA) weights.

    Args:
      ubm_dir: the folder train_ubm wrote (config.json, checkpoints/).
      checkpoint: a specific checkpoint path; default the latest one.
      mixed_precision: the Keras dtype policy the layers compute in: "" or "float32",
        "mixed_bfloat16", "mixed_float16". Variables stay float32 either way, so the
        same checkpoint restores (and fingerprints) identically.
      strategy: a tf.distribute strategy whose scope holds the variables (e.g. a
        MirroredStrategy: one copy per GPU); default the current one.
      matmul_dtype: "float32", or "bfloat16" to run only the gated resnets'
        convolutions and 1x1 layers in bfloat16 (with a float32 `mixed_precision`).

    Returns:
      A PixelCNNpp whose trainable weights are the Polyak averages; call it with
      `training=False`. Its `ubm_config` attribute holds the UBMConfig,
      `ubm_checkpoint` the checkpoint path, `ubm_precision` the policy name and
      `matmul_dtype` the matmul dtype.

    Raises:
      FileNotFoundError: no config.json or no checkpoint ("run train_ubm first").
      ValueError: unknown mixed-precision policy or matmul dtype.
    """
    if mixed_precision not in MIXED_PRECISION_POLICIES:
        raise ValueError(
            f"Unknown mixed precision {mixed_precision!r}: choose one of "
            f"{', '.join(repr(p) for p in MIXED_PRECISION_POLICIES)}."
        )
    layers.check_matmul_dtype(matmul_dtype)
    if not os.path.isdir(ubm_dir):
        raise FileNotFoundError(f"UBM folder {ubm_dir!r} does not exist: run train_ubm first.")
    saved = run_folder.read_run_config(ubm_dir)
    config = run_folder.ubm_config_from_dict(saved["ubm"])
    path = checkpoint or latest_checkpoint(ubm_dir)
    strategy = strategy or tf.distribute.get_strategy()
    with (
        strategy.scope(),
        precision_policy(mixed_precision or "float32"),
        layers.matmul_precision(matmul_dtype),
        fused.use_fused_kernels(config.fused_kernels),
    ):
        model = run_folder.build_model(config)
        ema = PolyakAverage(model.trainable_variables, config.ema_decay)
        holder = run_folder.model_variables_tracker(model)
        status = tf.train.Checkpoint(model=holder, ema=ema).restore(path)
        status.expect_partial().assert_existing_objects_matched()
        ema.copy_to(model.trainable_variables)
    model.ubm_config = config
    model.ubm_checkpoint = path
    model.ubm_precision = mixed_precision or "float32"
    logging.info(
        "Loaded UBM %s (EMA weights, %s, %s matmuls).", path, model.ubm_precision, matmul_dtype
    )
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
    The network runs in the model's dtype policy; its output is cast to float32 so
    the mixture likelihood (log-sum-exp over components, CDF differences of nearby
    values) and the maps are float32 whatever the policy.
    """
    cache = _COMPILED.setdefault(model, {})
    if jit_compile not in cache:

        def maps(images: tf.Tensor) -> tf.Tensor:
            x = images_to_model_input(images)
            params = tf.cast(model(x, training=False), tf.float32)
            return pixel_log_likelihood(x, params)

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


def batch_likelihood_fn(
    model: keras.Model,
    batch_size: int,
    strategy: tf.distribute.Strategy | None = None,
    *,
    jit_compile: bool = False,
) -> BatchLikelihoodFn:
    """A function mapping one batch of at most `batch_size` crops, on every replica.

    Every batch is padded to `batch_size` (a last, shorter batch too, so that one trace
    serves them all: a new shape costs a retrace). With a MirroredStrategy (the model
    built in its scope, see `load_ubm`) the batch is padded to a multiple of the
    replica count, each replica maps its consecutive slice and the slices are
    concatenated in order, so the output order is the input's.

    Returns:
      fn(uint8 [N, H, W, 3], N <= batch_size) -> (float32 [N, H, W], float32 [N]).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    per_replica = -(-batch_size // replicas)  # ceil: every replica gets the same shape
    fn = compiled_likelihood_fn(model, jit_compile)

    def padded_batch(images: np.ndarray) -> tuple[np.ndarray, int]:
        images = _validate_images(images)
        count = images.shape[0]
        if count > batch_size:
            raise ValueError(f"A batch of {count} crops exceeds batch_size {batch_size}.")
        padded = np.zeros((per_replica * replicas, *images.shape[1:]), np.uint8)
        padded[:count] = images
        return padded, count

    def single(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        padded, count = padded_batch(images)
        maps = fn(tf.constant(padded)).numpy()[:count]
        return maps, maps.sum(axis=(1, 2), dtype=np.float64).astype(np.float32)

    if replicas == 1:
        return single

    def distributed(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        padded, count = padded_batch(images)

        def slice_for(context: tf.distribute.InputContext) -> tf.Tensor:
            start = context.replica_id_in_sync_group * per_replica
            return tf.constant(padded[start : start + per_replica])

        values = strategy.experimental_distribute_values_from_function(slice_for)
        outputs = strategy.experimental_local_results(strategy.run(fn, args=(values,)))
        maps = np.concatenate([o.numpy() for o in outputs])[:count]
        return maps, maps.sum(axis=(1, 2), dtype=np.float64).astype(np.float32)

    return distributed


def _images_per_second(fn: BatchLikelihoodFn, images: np.ndarray, batch_size: int) -> float:
    fn(images[:batch_size])  # trace and warm up outside the timing
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        fn(images[i : i + batch_size])
    return len(images) / (time.perf_counter() - start)


def compare_precisions(
    ubm_dir: str,
    images: np.ndarray,
    mixed_precision: str = "mixed_bfloat16",
    batch_size: int = 64,
    *,
    matmul_dtype: str = "float32",
    checkpoint: str | None = None,
) -> dict[str, float | int | str]:
    """How far the maps of a lower-precision UBM are from float32 maps, and speeds.

    Loads the UBM twice from one checkpoint (float32, and `mixed_precision` with
    `matmul_dtype`), maps the same crops with both and times each (one warm-up batch
    first). The checkpoint is resolved once: with the latest one looked up per load, a
    UBM still training would be compared across two training steps.

    Args:
      ubm_dir: a train_ubm folder.
      images: uint8 [N, H, W, 3] crops.
      mixed_precision: "mixed_bfloat16", "mixed_float16", or "float32" together with
        `matmul_dtype="bfloat16"`.
      batch_size: crops per forward pass.
      matmul_dtype: the second model's matmul dtype (see `load_ubm`).
      checkpoint: the checkpoint both models restore; default the latest one.

    Returns:
      {"precision", "matmul_dtype", "checkpoint", "images", "batch_size",
       "mean_abs_diff_nats", "max_abs_diff_nats" (per pixel, over all maps),
       "mean_abs_diff_image_loglik_nats" (per image), "mean_image_loglik_float32",
       "images_per_s_float32", "images_per_s_mixed"}.
    """
    images = _validate_images(images)
    checkpoint = checkpoint or latest_checkpoint(ubm_dir)
    results = {}
    for name, policy, matmul in (
        ("reference", "float32", "float32"),
        ("lower", mixed_precision, matmul_dtype),
    ):
        model = load_ubm(ubm_dir, checkpoint, mixed_precision=policy, matmul_dtype=matmul)
        fn = batch_likelihood_fn(model, batch_size)
        speed = _images_per_second(fn, images, batch_size)
        results[name] = (likelihood_maps(model, images, batch_size), speed)
    (maps32, lls32), speed32 = results["reference"]
    (maps_mixed, lls_mixed), speed_mixed = results["lower"]
    diff = np.abs(maps_mixed.astype(np.float64) - maps32)
    return {
        "precision": mixed_precision,
        "matmul_dtype": matmul_dtype,
        "checkpoint": checkpoint,
        "images": int(images.shape[0]),
        "batch_size": batch_size,
        "mean_abs_diff_nats": float(diff.mean()),
        "max_abs_diff_nats": float(diff.max()),
        "mean_abs_diff_image_loglik_nats": float(
            np.abs(lls_mixed - lls32.astype(np.float64)).mean()
        ),
        "mean_image_loglik_float32": float(lls32.mean()),
        "images_per_s_float32": speed32,
        "images_per_s_mixed": speed_mixed,
    }
