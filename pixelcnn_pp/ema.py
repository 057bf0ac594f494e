"""Polyak averaging of the UBM's weights (an exponential moving average, "shadows").

The reference PixelCNN++ code (Salimans et al., ICLR 2017; openai/pixel-cnn
`train.py`, `tf.train.ExponentialMovingAverage` with decay 0.9995) evaluates, samples
and here computes the likelihood maps with the averaged weights, not the last ones.
`PolyakAverage` keeps the shadows, updates them after every step and swaps them into
the model for an evaluation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import keras
import tensorflow as tf


def tf_variable(variable: keras.Variable | tf.Variable) -> tf.Variable:
    """The tf.Variable behind a Keras 3 variable (or the variable itself)."""
    return variable.value if isinstance(variable, keras.Variable) else variable


def _variable_name(variable) -> str:
    return getattr(variable, "path", None) or variable.name


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
                tf.convert_to_tensor(tf_variable(v)),
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
            shadow.assign(tf.convert_to_tensor(tf_variable(variable)))

    def update(self, variables: Sequence[keras.Variable]) -> None:
        """shadow <- decay * shadow + (1 - decay) * variable, for every pair.

        In cross-replica context a mirrored shadow is assigned on every device from the
        variable's (identical) mirrored value.
        """
        decay = self.decay
        for shadow, variable in self._pairs(variables):
            value = tf.convert_to_tensor(tf_variable(variable))
            shadow.assign(decay * tf.convert_to_tensor(shadow) + (1.0 - decay) * value)

    def copy_to(self, variables: Sequence[keras.Variable]) -> None:
        """Assigns the shadows to `variables` (e.g. the same or a twin model's weights)."""
        for shadow, variable in self._pairs(variables):
            variable.assign(tf.convert_to_tensor(shadow))

    @contextlib.contextmanager
    def averaged_weights(self, variables: Sequence[keras.Variable]) -> Iterator[None]:
        """Within the block `variables` hold the averages; their values come back after."""
        pairs = list(self._pairs(variables))
        saved = [tf.identity(tf.convert_to_tensor(tf_variable(v))) for _, v in pairs]
        try:
            for shadow, variable in pairs:
                variable.assign(tf.convert_to_tensor(shadow))
            yield
        finally:
            for (_, variable), value in zip(pairs, saved, strict=True):
                variable.assign(value)
