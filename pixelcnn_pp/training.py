"""Training of the PixelCNN++ universal background model (UBM): optimizer, step, loop.

Follows the optimisation of the reference PixelCNN++ code (Salimans et al., ICLR 2017;
openai/pixel-cnn `train.py`) as used by Khodabakhsh & Busch (BIOSIG 2020):

* loss: negative log-likelihood of the discretized logistic mixture, reported in
  bits/dim; the gradient is that of the global-batch mean NLL per sub-pixel (Adam is
  invariant to the loss scale, up to its epsilon);
* Adam (beta1 0.95, beta2 0.9995, epsilon 1e-8), the learning rate multiplied by
  `lr_decay` every step;
* Polyak averaging (`ema.PolyakAverage`, decay 0.9995) of every trainable weight; the
  averaged weights are the ones evaluated and used for the likelihood maps (dropout
  off);
* data-dependent initialisation of the weight-normalised layers on the first batch of
  a fresh run (never on resume);
* `perturbation_rate` > 0 trains a background model instead (Ren et al., NeurIPS
  2019): each training value replaced at random with that probability
  (`perturbation`); validation scores the clean images.

`train` reads uint8 images from a function of the start position (so that the data
order is a function of seed and step, and a resumed run reads the batches an
uninterrupted one would) and writes TensorBoard scalars and checkpoints (model,
optimizer, shadows, step) under its run folder (`run_folder`); killed and restarted
with the same call it continues from the last checkpoint exactly. A non-finite loss
stops training with `NonFiniteLossError` and never overwrites the last good
checkpoint. It knows nothing of faces or file formats: the caller builds the datasets
and writes the run's config.json and metrics.json.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable

import keras
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from pixelcnn_pp import fused, layers, perturbation, run_folder, strategies, summaries
from pixelcnn_pp.config import UBMConfig, validate_config
from pixelcnn_pp.distributions import bits_per_dim, discretized_mix_logistic_loss
from pixelcnn_pp.ema import PolyakAverage
from pixelcnn_pp.model import PixelCNNpp, images_to_model_input

ADAM_EPSILON = 1e-8  # the reference code's
AUTOTUNE = tf.data.AUTOTUNE


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


def make_optimizer(config: UBMConfig) -> keras.optimizers.Optimizer:
    """Adam with the reference betas and a per-step exponential learning-rate decay.

    The learning rate at step t is `learning_rate * lr_decay ** t`. Under the
    `mixed_float16` policy the optimizer is wrapped in a dynamic LossScaleOptimizer.
    """
    schedule = keras.optimizers.schedules.ExponentialDecay(
        initial_learning_rate=config.learning_rate,
        decay_steps=1,
        decay_rate=config.lr_decay,
        staircase=False,
    )
    optimizer = keras.optimizers.Adam(
        learning_rate=schedule,
        beta_1=config.beta1,
        beta_2=config.beta2,
        epsilon=ADAM_EPSILON,
    )
    if config.mixed_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The learning rate the next step will use."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


@dataclasses.dataclass
class TrainingRun:
    """Everything one training run holds (built inside the strategy scope)."""

    strategy: tf.distribute.Strategy
    model: PixelCNNpp
    optimizer: keras.optimizers.Optimizer
    ema: PolyakAverage
    step: tf.Variable
    checkpoint: tf.train.Checkpoint
    manager: tf.train.CheckpointManager


def build_run(
    config: UBMConfig, strategy: tf.distribute.Strategy, checkpoint_dir: str, keep: int
) -> TrainingRun:
    """Builds model, optimizer, averages, step counter and checkpointing.

    Seeds Keras's random generators with `config.seed` first, so a fresh run starts
    from the same weights every time. Everything is created in `strategy`'s scope
    under the config's precision policy and convolution dtype; the optimizer is built
    so that a checkpoint restores its slots at once.
    """
    keras.utils.set_random_seed(config.seed)
    with (
        strategies.precision_policy(config.mixed_precision),
        layers.matmul_precision(config.matmul_dtype),
        fused.use_fused_kernels(config.fused_kernels),
        strategy.scope(),
    ):
        model = run_folder.build_model(config)
        optimizer = make_optimizer(config)
        optimizer.build(model.trainable_variables)
        ema = PolyakAverage(model.trainable_variables, config.ema_decay)
        step = tf.Variable(
            0,
            dtype=tf.int64,
            trainable=False,
            name="step",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
    checkpoint = tf.train.Checkpoint(
        model=run_folder.model_variables_tracker(model), optimizer=optimizer, ema=ema, step=step
    )
    manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=keep)
    return TrainingRun(strategy, model, optimizer, ema, step, checkpoint, manager)


def _compute_grads_fn(model: PixelCNNpp, global_batch: int, dims: int, xla: bool):
    """(nll sum, scaled gradients) of one replica's batch; XLA-compiled when asked.

    The optimizer update stays outside the compiled function because it all-reduces
    gradients across replicas.
    """

    def compute(images: tf.Tensor, optimizer_scale: tf.Tensor):
        x = images_to_model_input(images)
        with tf.GradientTape() as tape:
            params = model(x, training=True)
            nll = discretized_mix_logistic_loss(x, params)
            # Each replica adds its share of the global-batch mean; gradients are summed.
            loss = nll / float(global_batch * dims) * optimizer_scale
        grads = tape.gradient(loss, model.trainable_variables)
        return nll, grads

    return tf.function(compute, jit_compile=xla, autograph=False)


def make_train_step(run: TrainingRun, config: UBMConfig, global_batch: int):
    """The distributed train step: iterator of uint8 [B, H, W, 3] -> summed NLL (nats)."""
    size = config.image_size
    dims = size * size * 3
    compute = _compute_grads_fn(run.model, global_batch, dims, config.xla)
    variables = run.model.trainable_variables

    def replica_step(images: tf.Tensor) -> tf.Tensor:
        scale = run.optimizer.scale_loss(tf.constant(1.0, tf.float32))
        nll, grads = compute(images, scale)
        run.optimizer.apply_gradients(zip(grads, variables, strict=True))
        return nll

    @tf.function(autograph=False)
    def train_step(iterator) -> tf.Tensor:
        per_replica = run.strategy.run(replica_step, args=(next(iterator),))
        nll = run.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        run.ema.update(variables)
        run.step.assign_add(1)
        return nll

    return train_step


def make_eval_fn(model: PixelCNNpp, xla: bool):
    """uint8 [B, H, W, 3] -> summed NLL (nats) with dropout off, compiled."""

    def evaluate(images: tf.Tensor) -> tf.Tensor:
        x = images_to_model_input(images)
        return discretized_mix_logistic_loss(x, model(x, training=False))

    return tf.function(evaluate, jit_compile=xla, autograph=False)


def evaluate_bits_per_dim(
    run: TrainingRun, eval_fn, images: tf.data.Dataset, image_size: int, max_batches: int = 0
) -> float:
    """Bits/dim of the EMA weights on up to `max_batches` batches (0 = all) of `images`.

    `images` yields uint8 [B, image_size, image_size, 3]. The averages are swapped into
    the model for the evaluation and swapped out after, so training goes on from its
    own weights.
    """
    if max_batches > 0:
        images = images.take(max_batches)
    return evaluate_images(run, eval_fn, images, image_size)[0]


def evaluate_images(
    run: TrainingRun, eval_fn, images: tf.data.Dataset, image_size: int
) -> tuple[float, int]:
    """(bits/dim of the EMA weights, images scored) over all of `images`.

    `images` yields uint8 [B, image_size, image_size, 3]; which images (the whole
    split or a fixed sample) is the caller's choice. The averages are swapped in for
    the evaluation and out after.

    Raises:
      ValueError: `images` is empty.
    """
    total_nll, count = 0.0, 0
    with run.ema.averaged_weights(run.model.trainable_variables):
        for batch in images:
            total_nll += float(eval_fn(batch))
            count += int(batch.shape[0])
    if count == 0:
        raise ValueError("The validation data holds no images.")
    return bits_per_dim(total_nll, count * image_size**2 * 3), count


def total_steps(config: UBMConfig, num_examples: int, global_batch: int) -> int:
    """Steps of the run: `epochs` over the data, capped by `max_steps` when set."""
    steps = math.ceil(config.epochs * num_examples / global_batch) if config.epochs > 0 else 0
    if config.max_steps > 0:
        steps = min(steps, config.max_steps) if steps > 0 else config.max_steps
    return max(int(steps), 1)


def check_global_batch(
    batch_size: int, strategy: tf.distribute.Strategy, strategy_name: str = ""
) -> int:
    """The strategy's replica count, checking that it divides the global batch.

    Raises:
      ValueError: `batch_size` is not a multiple of the replica count.
    """
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ValueError(
            f"batch_size {batch_size} must be divisible by the {replicas} replicas of the "
            f"{strategy_name or type(strategy).__name__!r} strategy."
        )
    return replicas


def train(
    config: UBMConfig,
    train_images: Callable[[int], tf.data.Dataset],
    num_examples: int,
    out_dir: str,
    *,
    val_images: tf.data.Dataset | None = None,
    strategy: tf.distribute.Strategy | None = None,
    log_every_steps: int = 100,
    keep_checkpoints: int = 3,
) -> dict:
    """Trains (or resumes training of) the UBM; checkpoints and scalars go to `out_dir`.

    Args:
      config: architecture and optimisation settings; `batch_size` is the global batch.
      train_images: `start -> dataset`: the endless stream of uint8 [H, W, 3] training
        images from global example index `start` on (`step * batch_size` on resume).
        It must be a function of `start` alone (e.g. of a seed and the position), so
        that a resumed run reads the same batches as an uninterrupted one; every worker
        of a multi-worker run gets the same stream and keeps its share.
      num_examples: images in one epoch of the stream (for `config.epochs`).
      out_dir: the run folder (`run_folder`): checkpoints/ and tensorboard/ are written
        there by the chief; other workers write a scratch copy deleted at the end.
      val_images: uint8 [B, H, W, 3] validation batches, all of them scored at every
        evaluation (read again each time), or None (no validation). The caller picks
        them: the whole split or a fixed sample (`config.eval_batches` batches, e.g.
        `data_prep.face_images.validation_images`), never the first batches in file
        order, which would score a few videos only.
      strategy: where to run (default: the current one, see `strategies`).
      log_every_steps: steps between TensorBoard scalar writes.
      keep_checkpoints: checkpoints kept on disk.

    Returns:
      Final metrics: step, train_bits_per_dim (mean over the last logging window),
      val_bits_per_dim (EMA weights; None without validation data), num_val_images
      (images scored; 0 without validation data), images_per_sec, learning_rate,
      checkpoint (path), num_train_examples, total_steps (the step training ends at).

    Raises:
      ValueError: bad settings.
      NonFiniteLossError: the loss became NaN or infinite (the last good checkpoint is
        kept; nothing is saved after the bad step).
    """
    validate_config(config)
    if config.perturbation_rate > 0:  # a background model: perturbed images only
        clean_images = train_images

        def train_images(start: int) -> tf.data.Dataset:
            return perturbation.perturb_stream(
                clean_images(start), config.perturbation_rate, config.seed, start
            )

    strategy = strategy or tf.distribute.get_strategy()
    global_batch = config.batch_size
    replicas = check_global_batch(global_batch, strategy)
    chief = strategies.is_chief(strategy)
    # Every worker resumes from the chief's checkpoints; non-chief workers write their
    # (identical) checkpoints to a scratch folder that is deleted at the end.
    write_dir = out_dir if chief else tempfile.mkdtemp(prefix="ubm_worker_")
    steps = total_steps(config, num_examples, global_batch)
    logging.info(
        "UBM: %d training images, global batch %d on %d replica(s), %d steps.",
        num_examples,
        global_batch,
        replicas,
        steps,
    )
    run = build_run(config, strategy, run_folder.checkpoint_dir(write_dir), keep_checkpoints)
    logging.info("UBM parameters: %d", run.model.count_params())
    last_good = run_folder.find_latest_checkpoint(out_dir)
    if last_good:
        run.checkpoint.restore(last_good).assert_existing_objects_matched()
        logging.info("Resumed from %s at step %d.", last_good, int(run.step.numpy()))
    start_step = int(run.step.numpy())

    if not last_good:
        # The first images of the stream: the same on every worker.
        init_images = next(iter(train_images(0).batch(config.init_batch_size)))
        with strategy.scope():
            run.model.data_dependent_init(images_to_model_input(init_images))
            run.ema.reset(run.model.trainable_variables)
        logging.info("Data-dependent initialisation done on %d images.", config.init_batch_size)

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        images = train_images(start_step * global_batch)
        if context.num_input_pipelines > 1:
            images = images.shard(context.num_input_pipelines, context.input_pipeline_id)
        batch = context.get_per_replica_batch_size(global_batch)
        return images.batch(batch, drop_remainder=True).prefetch(AUTOTUNE)

    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    train_step = make_train_step(run, config, global_batch)
    eval_fn = make_eval_fn(run.model, config.xla)
    writer = summaries.create_writer(run_folder.tensorboard_dir(out_dir) if chief else None)
    dims = config.image_size**2 * 3

    metrics: dict = {
        "train_bits_per_dim": None,
        "val_bits_per_dim": None,
        "num_val_images": 0,
        "images_per_sec": None,
    }

    def validate() -> float:
        bpd, count = evaluate_images(run, eval_fn, val_images, config.image_size)
        metrics["num_val_images"] = count
        return bpd

    window_nll, window_steps, window_time = 0.0, 0, 0.0
    last_log_step = start_step
    step = start_step
    progress = tqdm(
        total=steps, initial=start_step, desc="train_ubm", unit="step", disable=not chief
    )
    try:
        while step < steps:
            tick = time.perf_counter()
            nll = float(train_step(iterator))
            elapsed = time.perf_counter() - tick
            step += 1
            if not math.isfinite(nll):
                raise NonFiniteLossError(
                    f"The training loss became {nll} at step {step}; training stopped. The last "
                    f"good checkpoint is {last_good or 'none (no checkpoint was saved yet)'}. "
                    "Lower the learning rate or check the training data, then re-run."
                )
            progress.update(1)
            window_nll += nll
            window_steps += 1
            if step > start_step + 1:  # the first step includes tracing/compilation
                window_time += elapsed
            if step % log_every_steps == 0 or step == steps:
                train_bpd = bits_per_dim(window_nll, global_batch * dims * window_steps)
                timed_steps = window_steps - (1 if last_log_step == start_step else 0)
                ips = global_batch * timed_steps / window_time if window_time > 0 else None
                lr = current_learning_rate(run.optimizer)
                metrics.update(train_bits_per_dim=train_bpd, images_per_sec=ips)
                scalars = {"train/bits_per_dim": train_bpd, "train/learning_rate": lr}
                if ips is not None:
                    scalars["train/images_per_sec"] = ips
                summaries.write_scalars(writer, step, scalars)
                progress.set_postfix(bpd=f"{train_bpd:.3f}", lr=f"{lr:.2e}")
                window_nll, window_steps, window_time = 0.0, 0, 0.0
                last_log_step = step
            if val_images is not None and (step % config.eval_every_steps == 0 or step == steps):
                val_bpd = validate()
                metrics["val_bits_per_dim"] = val_bpd
                summaries.write_scalars(writer, step, {"val/bits_per_dim": val_bpd})
                logging.info("step %d: validation %.4f bits/dim (EMA weights)", step, val_bpd)
            if step % config.checkpoint_every_steps == 0 or step == steps:
                path = run.manager.save(checkpoint_number=step)
                last_good = os.path.join(run_folder.checkpoint_dir(out_dir), os.path.basename(path))
                logging.info("step %d: saved %s", step, path)
    finally:
        progress.close()
        writer.flush()

    if metrics["val_bits_per_dim"] is None and val_images is not None:
        metrics["val_bits_per_dim"] = validate()
    metrics.update(
        step=int(run.step.numpy()),
        learning_rate=current_learning_rate(run.optimizer),
        checkpoint=last_good,
        num_train_examples=num_examples,
        total_steps=steps,
    )
    if not chief:
        shutil.rmtree(write_dir, ignore_errors=True)
    logging.info("UBM training finished: %s", metrics)
    return metrics
