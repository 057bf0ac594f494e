"""Where the UBM runs: tf.distribute strategies, the chief worker, the dtype policy.

One device (`default`), every local device (`mirrored`), or several workers
(`multiworker`, cluster from TF_CONFIG), as in the TensorFlow distributed-training
guide (tf.distribute.MirroredStrategy / MultiWorkerMirroredStrategy); and the Keras
mixed-precision policy the layers are built under (Micikevicius et al., ICLR 2018).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import keras
import tensorflow as tf
from absl import logging

from pixelcnn_pp.config import MIXED_PRECISION_POLICIES, STRATEGIES

__all__ = [
    "MIXED_PRECISION_POLICIES",
    "STRATEGIES",
    "is_chief",
    "make_strategy",
    "precision_policy",
]


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
