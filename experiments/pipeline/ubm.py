"""Pristine face crops to a trained PixelCNN++ UBM (the `train_ubm` stage).

Khodabakhsh & Busch (BIOSIG 2020), Sec. 3: the universal background model is a
PixelCNN++ (Salimans et al., ICLR 2017) trained on the pristine training faces only.
This stage joins the libraries: `data_prep.face_images` resolves and checks the face
shards (a corrupt shard or crops of another size stop the run with the file named)
and builds the image datasets; `pixelcnn_pp.training.train` trains on them. The run
folder (`pixelcnn_pp.run_folder`, normally `Workdir.ubm`) is a `StageFolder`: it gets
`config.json` first (another architecture in the same folder is refused, changed
settings are logged),
then checkpoints and TensorBoard scalars from the library, then `metrics.json`. A
finished run started again with the same settings returns its saved metrics at once,
before any shard is read (`finished_metrics`); any other run resumes from its last
checkpoint. Validation scores the whole val split or a fixed seeded sample of it
(`face_images.validation_images`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf
from absl import logging

from data_prep import face_images, files
from data_prep.stage_folder import StageFolder
from pixelcnn_pp import run_folder, strategies, training
from pixelcnn_pp.config import UBMConfig, validate_config


def _as_json(pattern: str | Sequence[str] | None) -> str | list[str] | None:
    return pattern if pattern is None or isinstance(pattern, str) else list(pattern)


def _ubm_clashes(saved: Mapping[str, Any], settings: Mapping[str, Any]) -> list[str]:
    """Another network, or a model of other training data, in the same run folder."""
    before, now = saved.get("ubm", {}), settings["ubm"]
    clashes = run_folder.architecture_clashes(before, UBMConfig(**now))
    found = [f"another architecture: {'; '.join(clashes)}"] if clashes else []
    # The training data's perturbation decides what the model is (UBM or background).
    rate = before.get("perturbation_rate", 0.0)
    if rate != now["perturbation_rate"]:
        found.append(
            f"other training data: perturbation_rate: saved {rate!r}, now "
            f"{now['perturbation_rate']!r}"
        )
    return found


def write_run_config(
    out_dir: str,
    config: UBMConfig,
    train_pattern: str | Sequence[str],
    val_pattern: str | Sequence[str] | None,
    strategy_name: str,
    num_replicas: int,
) -> None:
    """Writes `out_dir/config.json`, refusing to mix two architectures in one folder.

    Other settings (steps, learning rate) may change between runs: they are logged.

    Raises:
      stage_folder.SettingsClashError (a ValueError): the folder holds a UBM with other
        ARCHITECTURE_FIELDS or another perturbation_rate.
    """
    folder = StageFolder(
        out_dir,
        "a UBM",
        "use a new output folder, or delete the old one to start over",
        "the UBM folder",
    )
    settings = {
        "ubm": dataclasses.asdict(config),
        "train_data": _as_json(train_pattern),
        "val_data": _as_json(val_pattern),
        "strategy": strategy_name,
        "num_replicas": num_replicas,
        "tensorflow": tf.__version__,
    }
    saved = (folder.claim(settings, _ubm_clashes, sort_keys=True) or {}).get("ubm", {})
    changed = [
        f"{name}: {saved[name]!r} -> {value!r}"
        for name, value in settings["ubm"].items()
        if name in saved and saved[name] != value
    ]
    if changed:
        logging.warning("Settings changed since the last run in %s: %s", out_dir, changed)


def _saved_config(config: UBMConfig) -> dict:
    """The UBM settings as config.json holds them (a JSON round trip)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _finished_at(out_dir: str, steps: int) -> dict | None:
    """The saved final metrics if the latest checkpoint already reached `steps`."""
    latest = run_folder.find_latest_checkpoint(out_dir)
    metrics = files.read_json(run_folder.metrics_path(out_dir))
    if latest is None or metrics is None:
        return None
    step = run_folder.checkpoint_step(latest)
    return metrics if step >= steps and metrics.get("step") == step else None


def finished_metrics(
    out_dir: str,
    config: UBMConfig,
    train_pattern: str | Sequence[str],
    val_pattern: str | Sequence[str] | None,
) -> dict | None:
    """The saved final metrics of a finished run with these settings, or None.

    Decided from the run folder alone, without reading a shard: config.json must hold
    the same UBM settings and data patterns, metrics.json the step training ended at
    (`total_steps`, which depends on the number of training examples when `epochs`
    sets the length), and the latest checkpoint must be at that step. The shards
    behind an unchanged pattern are taken to be unchanged (a face stage that rewrote
    them wants a new UBM folder).
    """
    saved = files.read_json(run_folder.config_path(out_dir))
    metrics = files.read_json(run_folder.metrics_path(out_dir))
    if saved is None or metrics is None or "total_steps" not in metrics:
        return None
    same = (
        saved.get("ubm") == _saved_config(config)
        and saved.get("train_data") == _as_json(train_pattern)
        and saved.get("val_data") == _as_json(val_pattern)
    )
    return _finished_at(out_dir, int(metrics["total_steps"])) if same else None


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
      train_pattern: glob or list of training shards (pristine crops,
        e.g. `Workdir.face_shards("train", "original")`).
      val_pattern: glob or list of validation shards, or None (no validation).
      out_dir: the run folder (e.g. `Workdir.ubm`): config.json, checkpoints/,
        tensorboard/, metrics.json.
      strategy_name: "default", "mirrored" or "multiworker" (see
        `pixelcnn_pp.strategies.make_strategy`).
      shuffle_buffer: records permuted together in the training stream.
      log_every_steps: steps between TensorBoard scalar writes.
      keep_checkpoints: checkpoints kept on disk.
      strategy: an existing strategy to use instead of making one from the name.

    Returns:
      Final metrics (as in metrics.json): step, train_bits_per_dim (mean over the last
      logging window), val_bits_per_dim (EMA weights; None without validation data),
      num_val_images (the images scored: the val split, or `eval_batches *
      batch_size` of them drawn once by `seed`), images_per_sec, learning_rate,
      checkpoint (path), num_train_examples, total_steps.

    Raises:
      ValueError: bad settings, or an output folder of another architecture.
      FileNotFoundError: no shard matches a pattern.
      face_images.CorruptShardError: a shard is corrupt or holds crops of another size.
      PermissionError: the output folder cannot be written.
      training.NonFiniteLossError: the loss became NaN or infinite (the last good
        checkpoint is kept; nothing is saved after the bad step).
    """
    validate_config(config)
    finished = finished_metrics(out_dir, config, train_pattern, val_pattern)
    if finished is not None:
        logging.info("The UBM in %s is already trained (step %d).", out_dir, finished["step"])
        return finished
    if strategy is None:
        strategy = strategies.make_strategy(strategy_name)
    replicas = training.check_global_batch(config.batch_size, strategy, strategy_name)
    chief = strategies.is_chief(strategy)
    if chief:
        write_run_config(out_dir, config, train_pattern, val_pattern, strategy_name, replicas)

    size = config.image_size
    train_info = face_images.inspect_shards(train_pattern, expected_size=size)
    val_info = None
    if val_pattern is not None:
        val_info = face_images.inspect_shards(val_pattern, expected_size=size)
    num_examples = train_info.num_examples
    steps = training.total_steps(config, num_examples, config.batch_size)
    logging.info(
        "UBM: %d training crops in %d shards, %d steps.",
        num_examples,
        len(train_info.paths),
        steps,
    )
    finished = _finished_at(out_dir, steps)  # e.g. a folder of an older version
    if finished is not None:
        logging.info("The UBM in %s is already trained (step %d).", out_dir, finished["step"])
        return finished

    def train_images(start_example: int) -> tf.data.Dataset:
        return face_images.training_images(
            train_info.paths,
            num_examples,
            seed=config.seed,
            shuffle_buffer=min(shuffle_buffer, num_examples),
            crop_size=size,
            start_example=start_example,
        )

    val_images = None
    if val_info is not None:
        # The whole split, or a fixed sample of `eval_batches` batches spread over it.
        val_images, num_val = face_images.validation_images(
            val_info,
            config.batch_size,
            crop_size=size,
            sample_size=config.eval_batches * config.batch_size,
            seed=config.seed,
        )
        logging.info("Validation on %d of %d crops.", num_val, val_info.num_examples)
    metrics = training.train(
        config,
        train_images,
        num_examples,
        out_dir,
        val_images=val_images,
        strategy=strategy,
        log_every_steps=log_every_steps,
        keep_checkpoints=keep_checkpoints,
    )
    if chief:
        files.write_json_atomically(run_folder.metrics_path(out_dir), metrics, sort_keys=True)
    return metrics
