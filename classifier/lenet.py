"""The LeNet-style detector on per-pixel log-likelihood maps.

Khodabakhsh & Busch (BIOSIG 2020), Sec. 3.3: "a very simple classifier based on
LeNet-5 ... ReLU ... batch normalization between the output of the layers and the
activation function ... Each convolution is followed by a 2x2 maxpooling layer and
ReLU activation. The network has a total of 933,442 parameters."

The layer sizes are an INFERENCE: the paper's figure with them is lost, and the
parameter count alone does not fix them (tens of thousands of small CNNs have exactly
933,442 parameters, none of them the textbook 6-16-120-84 LeNet-5). We keep
LeNet-5's three-convolution layout with a 120-filter third convolution, a
single-channel 64x64 input (the RGB-joint map) and a two-way softmax, and choose the
one layout that fits the count as Keras counts it (batch norm: 4 per channel):

  input 64x64x1
  conv 3x3 valid, 10;  BN; maxpool 2x2; ReLU  -> 31x31x10    100 +     40
  conv 3x3 valid, 40;  BN; maxpool 2x2; ReLU  -> 14x14x40  3,640 +    160
  conv 3x3 valid, 120; BN; maxpool 2x2; ReLU  ->  6x6x120 43,320 +    480
  flatten; dense 200; BN; ReLU                ->   200   864,200 +    800
  dense 100; BN; ReLU                         ->   100    20,100 +    400
  dense 2; softmax                            ->     2       202
  total                                                  933,442

Batch norm keeps its moving statistics with momentum 0.9 (not Keras' 0.99): the
paper does not say, and small training sets (the smoke runs) would otherwise be
evaluated with statistics that have not settled.

The input standardisation of the maps (one mean and standard deviation, fitted on the
training maps only) is the model's first layer, `MapStandardization`, which keeps its
two numbers in the layer config: it is saved with the model and adds no parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import layers

LENET_PARAMETERS = 933_442


@keras.saving.register_keras_serializable(package="classifier")
class MapStandardization(layers.Layer):
    """`(x - mean) / std` per channel, with constants fitted on training inputs and saved
    in the config. A single float (one-channel maps) or one per channel."""

    def __init__(
        self, mean: float | Sequence[float] = 0.0, std: float | Sequence[float] = 1.0, **kwargs
    ):
        super().__init__(**kwargs)
        if not np.all(np.asarray(std, np.float64) > 0):
            raise ValueError(f"Standard deviation must be positive, got {std}.")
        self.mean = float(mean) if np.ndim(mean) == 0 else [float(m) for m in mean]
        self.std = float(std) if np.ndim(std) == 0 else [float(s) for s in std]

    def call(self, inputs):
        mean = tf.constant(self.mean, inputs.dtype)
        std = tf.constant(self.std, inputs.dtype)
        return (inputs - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "mean": self.mean, "std": self.std}


def _conv_block(x, filters: int, name: str, bn_momentum: float):
    x = layers.Conv2D(filters, 3, padding="valid", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _dense_block(x, units: int, name: str, bn_momentum: float):
    x = layers.Dense(units, name=f"{name}_dense")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_lenet(
    input_shape: tuple[int, int, int] = (64, 64, 1),
    num_classes: int = 2,
    map_mean: float | Sequence[float] = 0.0,
    map_std: float | Sequence[float] = 1.0,
    bn_momentum: float = 0.9,
) -> keras.Model:
    """The detector: maps [B, H, W, 1] (nats) to class probabilities [B, num_classes].

    Args:
      input_shape: (H, W, 1); the paper's maps are 64x64. (H, W, C) for the baselines
        on pixels (`classifier.inputs`): only the first convolution grows.
      num_classes: 2 (class 0 real, class 1 fake).
      map_mean, map_std: the standardisation of the input maps, fitted on training
        maps (`classifier.data.MapScan.standardization`), or one per channel; kept in
        the saved model.
      bn_momentum: decay of the batch-norm moving statistics used at inference. 0.9
        (PyTorch's default, Keras' is 0.99) lets them settle within a few dozen
        steps, which small training sets need; it changes no parameter count.

    Returns:
      An uncompiled keras.Model with 933,442 parameters for the default shapes.
    """
    inputs = keras.Input(shape=input_shape, name="loglik_map")
    x = MapStandardization(map_mean, map_std, name="standardize")(inputs)
    x = _conv_block(x, 10, "block1", bn_momentum)
    x = _conv_block(x, 40, "block2", bn_momentum)
    x = _conv_block(x, 120, "block3", bn_momentum)
    x = layers.Flatten(name="flatten")(x)
    x = _dense_block(x, 200, "fc1", bn_momentum)
    x = _dense_block(x, 100, "fc2", bn_momentum)
    outputs = layers.Dense(num_classes, activation="softmax", name="fc3")(x)
    return keras.Model(inputs, outputs, name="lenet_likelihood")
