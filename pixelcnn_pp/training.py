"""Training of the PixelCNN++ universal background model (UBM).

Follows the optimisation of the reference PixelCNN++ code (Salimans et al., ICLR 2017;
openai/pixel-cnn `train.py`) as used by Khodabakhsh & Busch (BIOSIG 2020):

* loss: negative log-likelihood of the discretized logistic mixture, reported in
  bits/dim; the gradient is that of the global-batch mean NLL per sub-pixel (Adam is
  invariant to the loss scale, up to its epsilon);
* Adam (beta1 0.95, beta2 0.9995, epsilon 1e-8), the learning rate multiplied by
  `lr_decay` every step;
* Polyak averaging (an exponential moving average, decay 0.9995) of every trainable
  weight, kept in shadow variables; the averaged weights are the ones evaluated and
  used for the likelihood maps (dropout off);
* data-dependent initialisation of the weight-normalised layers on the first batch of
  a fresh run (never on resume).

A run writes `config.json` first, then TensorBoard scalars and checkpoints (model,
optimizer, shadows, step; the data position follows from the step) under its output
folder; killed and restarted with the same command it continues from the last
checkpoint exactly. A non-finite loss stops training with `NonFiniteLossError` and
never overwrites the last good checkpoint. Runs on one device, all local devices
(`mirrored`) or several workers (`multiworker`, from TF_CONFIG), optionally with a
mixed-precision policy and XLA.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow.core.framework import summary_pb2
from tqdm import tqdm

from data_prep import face_pipeline
from pixelcnn_pp.config import UBMConfig
from pixelcnn_pp.distributions import discretized_mix_logistic_loss
from pixelcnn_pp.model import PixelCNNpp

STRATEGIES: tuple[str, ...] = ("default", "mirrored", "multiworker")
MIXED_PRECISION_POLICIES: tuple[str, ...] = ("", "float32", "mixed_bfloat16", "mixed_float16")
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
ADAM_EPSILON = 1e-8  # the reference code's
# Fields that fix the network; a resumed run must agree with the saved ones.
ARCHITECTURE_FIELDS: tuple[str, ...] = (
    "nr_resnet",
    "nr_filters",
    "nr_logistic_mix",
    "image_size",
)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


# -- set-up helpers -----------------------------------------------------------------
def make_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy called `name`.

    Args:
      name: "default" (one device), "mirrored" (every local GPU, or every logical CPU
        device when there is no GPU) or "multiworker" (MultiWorkerMirroredStrategy,
        cluster read from the TF_CONFIG environment variable).

    Raises:
      ValueError: unknown name.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            logging.warning("TF_CONFIG is not set: the multiworker strategy runs one worker.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown strategy {name!r}: choose one of {', '.join(STRATEGIES)}.")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files (always true off multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


@contextlib.contextmanager
def precision_policy(policy: str) -> Iterator[None]:
    """Sets the Keras global dtype policy for the layers built inside (restored after).

    Args:
      policy: "" or "float32" (full precision), "mixed_bfloat16" or "mixed_float16".
    """
    if policy not in MIXED_PRECISION_POLICIES:
        raise ValueError(
            f"Unknown mixed precision policy {policy!r}: choose one of "
            f"{', '.join(repr(p) for p in MIXED_PRECISION_POLICIES)}."
        )
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy or "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def validate_config(config: UBMConfig) -> None:
    """Checks the settings a run depends on; raises ValueError naming the bad one."""
    if config.image_size <= 0 or config.image_size % 4:
        raise ValueError(
            f"image_size must be a positive multiple of 4 (PixelCNN++ works at three "
            f"resolutions), got {config.image_size}: crop the faces to e.g. 64."
        )
    for name in ("nr_resnet", "nr_filters", "nr_logistic_mix", "batch_size", "init_batch_size"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}.")
    if config.max_steps < 0:
        raise ValueError(f"max_steps must be >= 0 (0 = no cap), got {config.max_steps}.")
    if config.epochs <= 0 and config.max_steps == 0:
        raise ValueError("Set epochs > 0 or max_steps > 0: there is nothing to train.")
    if config.learning_rate <= 0:
        raise ValueError(f"learning_rate must be positive, got {config.learning_rate}.")
    for name in ("eval_every_steps", "checkpoint_every_steps"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}.")
    if config.mixed_precision not in MIXED_PRECISION_POLICIES:
        raise ValueError(
            f"Unknown mixed_precision {config.mixed_precision!r}: choose one of "
            f"{', '.join(repr(p) for p in MIXED_PRECISION_POLICIES)}."
        )


def build_model(config: UBMConfig) -> PixelCNNpp:
    """A PixelCNN++ with the config's architecture, built on a zero batch.

    Builds under the current Keras dtype policy (see `precision_policy`); variables
    are created in the current tf.distribute scope.
    """
    model = PixelCNNpp(
        nr_resnet=config.nr_resnet,
        nr_filters=config.nr_filters,
        nr_logistic_mix=config.nr_logistic_mix,
        dropout_rate=config.dropout_rate,
    )
    size = config.image_size
    model(tf.zeros([1, size, size, 3], tf.float32), training=False)
    return model


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


def _scalar_metadata() -> summary_pb2.SummaryMetadata:
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"  # TensorBoard's scalar dashboard
    return metadata


def write_scalar(name: str, value: float, step: int) -> None:
    """Writes a scalar summary to the default writer in TensorBoard's scalar format.

    Uses `tf.summary.write` (in TensorFlow itself) so that writing logs does not need
    the tensorboard package, which only viewing them does.
    """
    tf.summary.write(name, tf.constant(value, tf.float32), step=step, metadata=_scalar_metadata())


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The learning rate the next step will use."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def images_to_model_input(images: tf.Tensor) -> tf.Tensor:
    """uint8 [B, H, W, 3] -> float32 in [-1, 1] (`img / 127.5 - 1`)."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


class PolyakAverage(tf.Module):
    """Exponential moving averages ("shadows") of a fixed list of variables.

    Create inside the strategy scope so the shadows are mirrored like the variables.
    Only the shadows are tracked for checkpoints; the averaged variables are passed to
    each method (same order every time). `update` must run in cross-replica context
    (e.g. after `strategy.run`).
    """

    def __init__(self, variables: Sequence[keras.Variable], decay: float) -> None:
        super().__init__(name="polyak_average")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}.")
        self.decay = float(decay)
        self.shadows = [
            tf.Variable(
                tf.convert_to_tensor(_tf_variable(v)),
                trainable=False,
                name=_variable_name(v).replace("/", "_") + "_ema",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
            for v in variables
        ]

    def _pairs(self, variables: Sequence[keras.Variable]):
        variables = list(variables)
        if len(variables) != len(self.shadows):
            raise ValueError(
                f"{len(self.shadows)} averaged weights but {len(variables)} variables: the "
                "models differ."
            )
        for shadow, variable in zip(self.shadows, variables, strict=True):
            if tuple(shadow.shape) != tuple(variable.shape):
                raise ValueError(
                    f"Averaged weight {shadow.name} has shape {tuple(shadow.shape)}, "
                    f"{_variable_name(variable)} has {tuple(variable.shape)}."
                )
            yield shadow, variable

    def reset(self, variables: Sequence[keras.Variable]) -> None:
        """Sets every shadow to its variable's current value."""
        for shadow, variable in self._pairs(variables):
            shadow.assign(tf.convert_to_tensor(_tf_variable(variable)))

    def update(self, variables: Sequence[keras.Variable]) -> None:
        """shadow <- decay * shadow + (1 - decay) * variable, for every pair.

        In cross-replica context a mirrored shadow is assigned on every device from the
        variable's (identical) mirrored value.
        """
        decay = self.decay
        for shadow, variable in self._pairs(variables):
            value = tf.convert_to_tensor(_tf_variable(variable))
            shadow.assign(decay * tf.convert_to_tensor(shadow) + (1.0 - decay) * value)

    def copy_to(self, variables: Sequence[keras.Variable]) -> None:
        """Assigns the shadows to `variables` (e.g. the same or a twin model's weights)."""
        for shadow, variable in self._pairs(variables):
            variable.assign(tf.convert_to_tensor(shadow))

    @contextlib.contextmanager
    def averaged_weights(self, variables: Sequence[keras.Variable]) -> Iterator[None]:
        """Within the block `variables` hold the averages; their values come back after."""
        pairs = list(self._pairs(variables))
        saved = [tf.identity(tf.convert_to_tensor(_tf_variable(v))) for _, v in pairs]
        try:
            for shadow, variable in pairs:
                variable.assign(tf.convert_to_tensor(shadow))
            yield
        finally:
            for (_, variable), value in zip(pairs, saved, strict=True):
                variable.assign(value)


def model_variables_tracker(model: keras.Model) -> tf.Module:
    """A checkpointable holder of all of a model's variables, in model order.

    `trainable` holds the weights; `state` the non-trainable variables, among them the
    dropout layers' random-generator states, which a checkpoint of the Keras model
    object alone leaves out (they are needed for an exact resume).
    """
    holder = tf.Module(name="model_variables")
    holder.trainable = [_tf_variable(v) for v in model.trainable_variables]
    holder.state = [_tf_variable(v) for v in model.non_trainable_variables]
    return holder


def _tf_variable(variable) -> tf.Variable:
    """The tf.Variable behind a Keras 3 variable (or the variable itself)."""
    return variable.value if isinstance(variable, keras.Variable) else variable


def _variable_name(variable) -> str:
    return getattr(variable, "path", None) or variable.name


# -- the run -----------------------------------------------------------------------
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
    under the config's precision policy; the optimizer is built so that a checkpoint
    restores its slots at once.
    """
    keras.utils.set_random_seed(config.seed)
    with precision_policy(config.mixed_precision), strategy.scope():
        model = build_model(config)
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
        model=model_variables_tracker(model), optimizer=optimizer, ema=ema, step=step
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
    """The distributed train step: iterator -> summed NLL (nats) of the global batch."""
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
    run: TrainingRun, eval_fn, pattern: str | Sequence[str], config: UBMConfig
) -> float:
    """Bits/dim of the EMA weights on up to `eval_batches` batches of `pattern`.

    The averages are swapped into the model for the evaluation and swapped out after,
    so training goes on from its own weights.
    """
    dataset = face_pipeline.face_dataset(
        pattern, config.batch_size, crop_size=config.image_size, validate=False
    )
    if config.eval_batches > 0:
        dataset = dataset.take(config.eval_batches)
    total_nll, count = 0.0, 0
    with run.ema.averaged_weights(run.model.trainable_variables):
        for images in dataset:
            total_nll += float(eval_fn(images))
            count += int(images.shape[0])
    if count == 0:
        raise ValueError(f"The validation data {pattern!r} holds no images.")
    return total_nll / (count * config.image_size**2 * 3 * math.log(2.0))


def _write_json(path: str, payload: dict) -> None:
    """Writes JSON atomically (temporary file, then rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def read_run_config(out_dir: str) -> dict:
    """The `config.json` of a UBM run folder.

    Raises:
      FileNotFoundError: the folder holds no config.json.
    """
    path = os.path.join(out_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No {CONFIG_FILE} in {out_dir!r}: it is not a UBM folder; run train_ubm first."
        )
    with open(path) as handle:
        return json.load(handle)


def ubm_config_from_dict(values: dict) -> UBMConfig:
    """A UBMConfig from its saved dict, ignoring fields this version does not know."""
    known = {f.name for f in dataclasses.fields(UBMConfig)}
    return UBMConfig(**{k: v for k, v in values.items() if k in known})


def _write_run_config(
    out_dir: str,
    config: UBMConfig,
    train_pattern: str | Sequence[str],
    val_pattern: str | Sequence[str] | None,
    strategy_name: str,
    num_replicas: int,
) -> None:
    """Writes config.json, refusing to mix two architectures in one folder."""
    path = os.path.join(out_dir, CONFIG_FILE)
    if os.path.isfile(path):
        saved = read_run_config(out_dir).get("ubm", {})
        clashes = [
            f"{name}: saved {saved.get(name)!r}, now {getattr(config, name)!r}"
            for name in ARCHITECTURE_FIELDS
            if name in saved and saved[name] != getattr(config, name)
        ]
        if clashes:
            raise ValueError(
                f"{out_dir!r} holds a UBM with another architecture ({'; '.join(clashes)}): "
                "use a new output folder, or delete the old one to start over."
            )
        changed = [
            f"{name}: {saved[name]!r} -> {value!r}"
            for name, value in dataclasses.asdict(config).items()
            if name in saved and saved[name] != value
        ]
        if changed:
            logging.warning("Settings changed since the last run in %s: %s", out_dir, changed)
    _write_json(
        path,
        {
            "ubm": dataclasses.asdict(config),
            "train_data": train_pattern if isinstance(train_pattern, str) else list(train_pattern),
            "val_data": val_pattern
            if val_pattern is None or isinstance(val_pattern, str)
            else list(val_pattern),
            "strategy": strategy_name,
            "num_replicas": num_replicas,
            "tensorflow": tf.__version__,
        },
    )


def _check_writable(out_dir: str) -> None:
    try:
        os.makedirs(out_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir):
            pass
    except OSError as err:
        raise PermissionError(
            f"Cannot write to the output folder {out_dir!r} ({err.strerror}): choose a "
            "writable work directory."
        ) from None


def total_steps(config: UBMConfig, num_examples: int, global_batch: int) -> int:
    """Steps of the run: `epochs` over the data, capped by `max_steps` when set."""
    steps = math.ceil(config.epochs * num_examples / global_batch) if config.epochs > 0 else 0
    if config.max_steps > 0:
        steps = min(steps, config.max_steps) if steps > 0 else config.max_steps
    return max(int(steps), 1)


def _finished_metrics(out_dir: str, checkpoint_dir: str, steps: int) -> dict | None:
    """The saved final metrics if the latest checkpoint already reached `steps`."""
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    metrics_path = os.path.join(out_dir, METRICS_FILE)
    if latest is None or not os.path.isfile(metrics_path):
        return None
    step = int(tf.train.load_checkpoint(latest).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
    with open(metrics_path) as handle:
        metrics = json.load(handle)
    return metrics if step >= steps and metrics.get("step") == step else None


def train_ubm(
    config: UBMConfig,
    train_pattern: str | Sequence[str],
    val_pattern: str | Sequence[str] | None,
    out_dir: str,
    strategy_name: str = "default",
    *,
    shuffle_buffer: int = 10_000,
    log_every_steps: int = 100,
    keep_checkpoints: int = 3,
    strategy: tf.distribute.Strategy | None = None,
) -> dict:
    """Trains (or resumes training of) the UBM on face-crop TFRecords.

    Args:
      config: architecture and optimisation settings; `batch_size` is the global batch.
      train_pattern: glob or list of training shards (pristine crops).
      val_pattern: glob or list of validation shards, or None (no validation).
      out_dir: the run folder: config.json, checkpoints/, tensorboard/, metrics.json.
      strategy_name: "default", "mirrored" or "multiworker" (see `make_strategy`).
      shuffle_buffer: records in the training shuffle buffer.
      log_every_steps: steps between TensorBoard scalar writes.
      keep_checkpoints: checkpoints kept on disk.
      strategy: an existing strategy to use instead of making one from the name.

    Returns:
      Final metrics: step, train_bits_per_dim (mean over the last logging window),
      val_bits_per_dim (EMA weights; None without validation data), images_per_sec,
      learning_rate, checkpoint (path), num_train_examples.

    Raises:
      ValueError: bad settings, or an output folder of another architecture.
      FileNotFoundError: no shard matches a pattern.
      face_pipeline.CorruptShardError: a shard is corrupt or holds crops of another size.
      PermissionError: the output folder cannot be written.
      NonFiniteLossError: the loss became NaN or infinite (the last good checkpoint is
        kept; nothing is saved after the bad step).
    """
    validate_config(config)
    if strategy is None:
        strategy = make_strategy(strategy_name)
    replicas = strategy.num_replicas_in_sync
    global_batch = config.batch_size
    if global_batch % replicas:
        raise ValueError(
            f"batch_size {global_batch} must be divisible by the {replicas} replicas of the "
            f"{strategy_name!r} strategy."
        )
    chief = is_chief(strategy)
    # Every worker resumes from the chief's checkpoints; non-chief workers write their
    # (identical) checkpoints to a scratch folder that is deleted at the end.
    write_dir = out_dir if chief else tempfile.mkdtemp(prefix="ubm_worker_")
    checkpoint_dir = os.path.join(out_dir, CHECKPOINT_DIR)
    _check_writable(write_dir)
    if chief:
        _write_run_config(out_dir, config, train_pattern, val_pattern, strategy_name, replicas)

    train_info = face_pipeline.inspect_shards(train_pattern, expected_size=config.image_size)
    if val_pattern is not None:
        face_pipeline.inspect_shards(val_pattern, expected_size=config.image_size)
    num_examples = train_info.num_examples
    steps = total_steps(config, num_examples, global_batch)
    logging.info(
        "UBM: %d training crops in %d shards, global batch %d on %d replica(s), %d steps.",
        num_examples,
        len(train_info.paths),
        global_batch,
        replicas,
        steps,
    )

    finished = _finished_metrics(out_dir, checkpoint_dir, steps)
    if finished is not None:
        logging.info("The UBM in %s is already trained (step %d).", out_dir, finished["step"])
        return finished
    run = build_run(config, strategy, os.path.join(write_dir, CHECKPOINT_DIR), keep_checkpoints)
    logging.info("UBM parameters: %d", run.model.count_params())
    last_good = tf.train.latest_checkpoint(checkpoint_dir)
    if last_good:
        run.checkpoint.restore(last_good).assert_existing_objects_matched()
        logging.info("Resumed from %s at step %d.", last_good, int(run.step.numpy()))
    start_step = int(run.step.numpy())

    def stream(start: int) -> tf.data.Dataset:
        return face_pipeline.training_record_stream(
            train_info.paths,
            num_examples,
            seed=config.seed,
            shuffle_buffer=min(shuffle_buffer, num_examples),
            start_example=start,
        )

    if not last_good:
        # The first records of the stream: the same on every worker.
        init_images = next(
            iter(
                face_pipeline.parse_images(
                    stream(0), config.init_batch_size, crop_size=config.image_size
                )
            )
        )
        with strategy.scope():
            run.model.data_dependent_init(images_to_model_input(init_images))
            run.ema.reset(run.model.trainable_variables)
        logging.info("Data-dependent initialisation done on %d crops.", config.init_batch_size)

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        records = stream(start_step * global_batch)
        if context.num_input_pipelines > 1:
            records = records.shard(context.num_input_pipelines, context.input_pipeline_id)
        return face_pipeline.parse_images(
            records,
            context.get_per_replica_batch_size(global_batch),
            crop_size=config.image_size,
            drop_remainder=True,
        )

    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    train_step = make_train_step(run, config, global_batch)
    eval_fn = make_eval_fn(run.model, config.xla)
    writer = (
        tf.summary.create_file_writer(os.path.join(out_dir, TENSORBOARD_DIR))
        if chief
        else tf.summary.create_noop_writer()
    )
    dims = config.image_size**2 * 3
    bpd_scale = 1.0 / (global_batch * dims * math.log(2.0))

    metrics: dict = {
        "train_bits_per_dim": None,
        "val_bits_per_dim": None,
        "images_per_sec": None,
    }
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
                train_bpd = window_nll * bpd_scale / window_steps
                timed_steps = window_steps - (1 if last_log_step == start_step else 0)
                ips = global_batch * timed_steps / window_time if window_time > 0 else None
                lr = current_learning_rate(run.optimizer)
                metrics.update(train_bits_per_dim=train_bpd, images_per_sec=ips)
                with writer.as_default():
                    write_scalar("train/bits_per_dim", train_bpd, step)
                    write_scalar("train/learning_rate", lr, step)
                    if ips is not None:
                        write_scalar("train/images_per_sec", ips, step)
                progress.set_postfix(bpd=f"{train_bpd:.3f}", lr=f"{lr:.2e}")
                window_nll, window_steps, window_time = 0.0, 0, 0.0
                last_log_step = step
            if val_pattern is not None and (step % config.eval_every_steps == 0 or step == steps):
                val_bpd = evaluate_bits_per_dim(run, eval_fn, val_pattern, config)
                metrics["val_bits_per_dim"] = val_bpd
                with writer.as_default():
                    write_scalar("val/bits_per_dim", val_bpd, step)
                logging.info("step %d: validation %.4f bits/dim (EMA weights)", step, val_bpd)
            if step % config.checkpoint_every_steps == 0 or step == steps:
                path = run.manager.save(checkpoint_number=step)
                last_good = os.path.join(checkpoint_dir, os.path.basename(path))
                logging.info("step %d: saved %s", step, path)
    finally:
        progress.close()
        writer.flush()

    if metrics["val_bits_per_dim"] is None and val_pattern is not None:
        metrics["val_bits_per_dim"] = evaluate_bits_per_dim(run, eval_fn, val_pattern, config)
    metrics.update(
        step=int(run.step.numpy()),
        learning_rate=current_learning_rate(run.optimizer),
        checkpoint=last_good,
        num_train_examples=num_examples,
    )
    if chief:
        _write_json(os.path.join(out_dir, METRICS_FILE), metrics)
    else:
        shutil.rmtree(write_dir, ignore_errors=True)
    logging.info("UBM training finished: %s", metrics)
    return metrics


def checkpoint_ema_weights(checkpoint_path: str) -> list[np.ndarray]:
    """The averaged (EMA) weights stored in one training checkpoint, in model order."""
    reader = tf.train.load_checkpoint(checkpoint_path)
    prefix = "ema/shadows/"
    names = [n for n in reader.get_variable_to_shape_map() if n.startswith(prefix)]
    names.sort(key=lambda n: int(n[len(prefix) :].split("/")[0]))
    return [reader.get_tensor(n) for n in names]
