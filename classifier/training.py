"""Training the LeNet-style detector on likelihood maps, with epoch selection on val.

Khodabakhsh & Busch (BIOSIG 2020), Sec. 3.3: Adam, learning rate 0.001, 25 epochs.
What the paper leaves open, decided here and recorded in every metrics.json:
- Class balance: class weights, w_c = N / (2 N_c), so real and fake frames weigh the
  same in the loss (leave-one-out trains on three fake methods against one real set).
- Input standardisation: one mean and standard deviation of the training maps only,
  stored in the model's first layer (`lenet.MapStandardization`).
- Epoch selection: after every epoch the model is scored on the validation split
  (with the same class balancing, so the score is balanced accuracy at 0.5; ties go
  to the lower balanced loss); the best epoch's weights are kept. `train_streamed`
  takes no test data and refuses anything but the train and val splits.

`train_streamed` trains on tf.data streams of maps (`classifier.data.stream_maps`),
given the standardisation and class counts of one streaming pass
(`classifier.data.MapScan`). Training examples go through a shuffle
buffer of at most `SHUFFLE_BUFFER` maps, seeded from the config seed, so memory stays
bounded and a re-run sees the same order.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from classifier import lenet
from classifier.config import MAPS, DetectorConfig
from classifier.data import MapScan
from classifier.inputs import CHANNELS

BALANCE = "class_weights"
# Training maps held for shuffling: 10,000 64x64 float32 maps, 160 MiB, whatever the
# data set size. The shard order is shuffled too (`classifier.data.stream_maps`).
SHUFFLE_BUFFER = 10_000


@dataclasses.dataclass
class TrainedDetector:
    """A trained detector and how it was obtained."""

    model: keras.Model
    best_epoch: int  # 1-based epoch whose weights the model holds
    history: list[dict[str, float]]  # per epoch: loss, accuracy, val_loss, val_accuracy
    # {"mean", "std"} of the training inputs: floats for maps, one per channel otherwise
    standardization: dict[str, float | list[float]]
    class_weights: dict[int, float]


def class_weights_from_counts(counts: np.ndarray) -> dict[int, float]:
    """{class: N / (2 N_class)} for class counts int [2] (real, fake).

    Raises:
      ValueError: a class is absent.
    """
    counts = np.asarray(counts)
    if np.any(counts[:2] == 0):
        raise ValueError(
            f"Training needs real and fake examples, got {counts[0]} real, {counts[1]} fake."
        )
    total = int(np.sum(counts))
    return {c: float(total / (2.0 * counts[c])) for c in (0, 1)}


class BestOnValidation(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the best validation score.

    Score: highest `val_accuracy`, then lowest `val_loss` (both class-balanced).
    The best weights are put back into the model when training ends.
    """

    def __init__(self):
        super().__init__()
        self.best_key: tuple[float, float] | None = None
        self.best_epoch = 0
        self.best_weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        key = (float(logs["val_accuracy"]), -float(logs["val_loss"]))
        if not np.isfinite(key[1]):
            key = (key[0], -np.inf)
        if self.best_key is None or key > self.best_key:
            self.best_key = key
            self.best_epoch = epoch + 1
            self.best_weights = [np.copy(w) for w in self.model.get_weights()]

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def _pairs(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Examples (dicts of `classifier.data.stream_maps`) to (input [H, W, C], label)."""
    return dataset.map(lambda e: (e["input"], e["label"]))


def _fit(
    train: tf.data.Dataset,
    val: tf.data.Dataset,
    *,
    input_shape: tuple[int, int, int],
    num_train: int,
    standardization: tuple[float | list[float], float | list[float]],
    weights: dict[int, float],
    val_weights: dict[int, float],
    config: DetectorConfig,
    verbose: int,
) -> TrainedDetector:
    """The training loop over unbatched (input [H, W, C], label) datasets."""
    keras.utils.set_random_seed(config.seed)
    mean, std = standardization
    model = lenet.build_lenet(input_shape, num_classes=2, map_mean=mean, map_std=std)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss="sparse_categorical_crossentropy",
        weighted_metrics=["accuracy"],
    )
    buffer = max(1, min(SHUFFLE_BUFFER, num_train))
    train_batches = (
        train.shuffle(buffer, seed=config.seed, reshuffle_each_iteration=True)
        .batch(config.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    w_real, w_fake = np.float32(val_weights[0]), np.float32(val_weights[1])
    val_batches = (
        val.map(lambda x, y: (x, y, tf.where(tf.equal(y, 1), w_fake, w_real)))
        .batch(config.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    selector = BestOnValidation()
    fit = model.fit(
        train_batches,
        epochs=config.epochs,
        class_weight=weights,
        validation_data=val_batches,
        callbacks=[selector],
        shuffle=False,  # the stream is shuffled itself (seeded buffer)
        verbose=verbose,
    )
    history = [
        {k: float(v[i]) for k, v in fit.history.items()} for i in range(len(fit.history["loss"]))
    ]
    logging.info("Best validation epoch %d of %d.", selector.best_epoch, config.epochs)
    return TrainedDetector(
        model=model,
        best_epoch=selector.best_epoch,
        history=history,
        standardization={"mean": mean, "std": std},
        class_weights=weights,
    )


def _check_config(config: DetectorConfig) -> None:
    if config.balance != BALANCE:
        raise ValueError(f"Unsupported balance {config.balance!r}; only {BALANCE!r} is.")


def train_streamed(
    train: tf.data.Dataset,
    val: tf.data.Dataset,
    train_scan: MapScan,
    val_scan: MapScan,
    config: DetectorConfig,
    map_size: int = 64,
    verbose: int = 0,
    kind: str = MAPS,
) -> TrainedDetector:
    """Trains the detector on streamed inputs, choosing the epoch on streamed val inputs.

    Args:
      train, val: unbatched example streams (`classifier.data.stream_maps`: dicts
        with `input` float32 [H, W, C] of `kind` and `label` int64 []); train in
        shuffled shard order, re-iterated every epoch.
      train_scan, val_scan: their statistics (`classifier.data.scan_folders`, merged):
        the standardisation is fitted on train_scan, class weights come from the
        counts of each. Only the train and val splits are allowed.
      config: epochs, learning rate, batch size, seed.
      map_size: the map side.
      verbose: Keras fit verbosity.
      kind: the input (`classifier.inputs`): maps, or a baseline's pixels.

    Returns:
      The TrainedDetector holding the best validation epoch's weights.

    Raises:
      ValueError: a scan holds another split, a class is missing, or a set is empty.
    """
    for scan, split in ((train_scan, "train"), (val_scan, "val")):
        if scan.count == 0:
            raise ValueError(f"The {split} set is empty: nothing to train or select on.")
        others = sorted({kind[0] for kind in scan.kinds} - {split})
        if others:
            raise ValueError(f"The {split} set holds examples of the {others} split(s).")
    _check_config(config)
    weights = class_weights_from_counts(train_scan.label_counts)
    val_weights = class_weights_from_counts(val_scan.label_counts)
    logging.info(
        "Training on %d streamed maps (%s), selecting on %d val maps; class weights %s.",
        train_scan.count,
        train_scan.composition(),
        val_scan.count,
        weights,
    )
    # The scans' counts, asserted: a shard changed since the scan fails loudly.
    return _fit(
        _pairs(train).apply(tf.data.experimental.assert_cardinality(train_scan.count)),
        _pairs(val).apply(tf.data.experimental.assert_cardinality(val_scan.count)),
        input_shape=(map_size, map_size, len(CHANNELS[kind])),
        num_train=train_scan.count,
        standardization=_as_scalar_for_maps(train_scan.standardization(kind)),
        weights=weights,
        val_weights=val_weights,
        config=config,
        verbose=verbose,
    )


def _as_scalar_for_maps(
    standardization: tuple[list[float], list[float]],
) -> tuple[float | list[float], float | list[float]]:
    """One mean and deviation as plain floats for one channel (the saved maps models and
    their metrics.json keep that form), a list per channel otherwise."""
    mean, std = standardization
    return (mean[0], std[0]) if len(mean) == 1 else (mean, std)


def predict_scores(model: keras.Model, maps: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Fake probabilities float64 [N] of maps [N, H, W]."""
    if len(maps) == 0:
        return np.zeros((0,), np.float64)
    probs = model.predict(maps[..., None].astype(np.float32), batch_size=batch_size, verbose=0)
    return probs[:, 1].astype(np.float64)


def predict_batch(model: keras.Model, inputs: tf.Tensor | np.ndarray) -> np.ndarray:
    """Fake probabilities float64 [B] of one batch of maps [B, H, W] or inputs [B, H, W, C]."""
    inputs = tf.cast(inputs, tf.float32)
    if inputs.shape.rank == 3:
        inputs = tf.expand_dims(inputs, -1)
    probs = model.predict_on_batch(inputs)
    return np.asarray(probs)[:, 1].astype(np.float64)
