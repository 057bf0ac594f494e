"""Training the LeNet-style detector on likelihood maps, with epoch selection on val.

Khodabakhsh & Busch (BIOSIG 2020), Sec. 3.3: Adam, learning rate 0.001, 25 epochs.
What the paper leaves open, decided here and recorded in every metrics.json:
- Class balance: class weights, w_c = N / (2 N_c), so real and fake frames weigh the
  same in the loss (leave-one-out trains on three fake methods against one real set).
- Input standardisation: one mean and standard deviation of the training maps only,
  stored in the model's first layer (`lenet.MapStandardization`).
- Epoch selection: after every epoch the model is scored on the validation split
  (with the same class balancing, so the score is balanced accuracy at 0.5; ties go
  to the lower balanced loss); the best epoch's weights are kept. `train_detector`
  takes no test data and refuses anything but the train and val splits.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
from absl import logging

from classifier import lenet
from classifier.config import DetectorConfig
from classifier.data import LikelihoodSet

BALANCE = "class_weights"


@dataclasses.dataclass
class TrainedDetector:
    """A trained detector and how it was obtained."""

    model: keras.Model
    best_epoch: int  # 1-based epoch whose weights the model holds
    history: list[dict[str, float]]  # per epoch: loss, accuracy, val_loss, val_accuracy
    standardization: dict[str, float]  # {"mean", "std"} of the training maps
    class_weights: dict[int, float]


def fit_standardization(maps: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of maps [N, H, W] (float64 sums; std floored)."""
    maps = np.asarray(maps, np.float64)
    return float(maps.mean()), max(float(maps.std()), 1e-6)


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """{class: N / (2 N_class)} for labels [N] in {0, 1}.

    Raises:
      ValueError: a class is absent.
    """
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=2)
    if np.any(counts == 0):
        raise ValueError(
            f"Training needs real and fake examples, got {counts[0]} real, {counts[1]} fake."
        )
    return {c: float(len(labels) / (2.0 * counts[c])) for c in (0, 1)}


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


def _inputs(data: LikelihoodSet) -> np.ndarray:
    return data.maps[..., None].astype(np.float32)


def train_detector(
    train: LikelihoodSet,
    val: LikelihoodSet,
    config: DetectorConfig,
    verbose: int = 0,
) -> TrainedDetector:
    """Trains the detector on `train`, choosing the epoch on `val`.

    Args:
      train: training maps (split "train" only), both classes present.
      val: selection maps (split "val" only), both classes present.
      config: epochs, learning rate, batch size, seed.
      verbose: Keras fit verbosity (0 silent, 2 one line per epoch).

    Returns:
      The TrainedDetector holding the best validation epoch's weights.

    Raises:
      ValueError: an example of another split is passed, a class is missing, or the
        sets are empty.
    """
    for data, split in ((train, "train"), (val, "val")):
        if len(data) == 0:
            raise ValueError(f"The {split} set is empty: nothing to train or select on.")
        others = sorted(set(np.unique(data.splits).tolist()) - {split})
        if others:
            raise ValueError(f"The {split} set holds examples of the {others} split(s).")
    if config.balance != BALANCE:
        raise ValueError(f"Unsupported balance {config.balance!r}; only {BALANCE!r} is.")
    keras.utils.set_random_seed(config.seed)
    mean, std = fit_standardization(train.maps)
    height, width = train.maps.shape[1:]
    model = lenet.build_lenet((height, width, 1), num_classes=2, map_mean=mean, map_std=std)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss="sparse_categorical_crossentropy",
        weighted_metrics=["accuracy"],
    )
    weights = class_weights(train.labels)
    val_weights = class_weights(val.labels)
    val_sample_weight = np.where(val.labels == 1, val_weights[1], val_weights[0])
    selector = BestOnValidation()
    logging.info(
        "Training on %d maps (%s), selecting on %d val maps; class weights %s.",
        len(train),
        train.composition(),
        len(val),
        weights,
    )
    fit = model.fit(
        _inputs(train),
        train.labels,
        batch_size=config.batch_size,
        epochs=config.epochs,
        class_weight=weights,
        validation_data=(_inputs(val), val.labels, val_sample_weight.astype(np.float32)),
        shuffle=True,
        callbacks=[selector],
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


def predict_scores(model: keras.Model, maps: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Fake probabilities float64 [N] of maps [N, H, W]."""
    if len(maps) == 0:
        return np.zeros((0,), np.float64)
    probs = model.predict(maps[..., None].astype(np.float32), batch_size=batch_size, verbose=0)
    return probs[:, 1].astype(np.float64)
