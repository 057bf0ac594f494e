"""TensorBoard scalars of a UBM run, written with TensorFlow alone.

Scalars go through `tf.summary.write` with the metadata of TensorBoard's scalar
dashboard (the format `tensorboard.summary.scalar` writes), so writing logs does not
need the tensorboard package, which only viewing them does.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def _scalar_metadata() -> summary_pb2.SummaryMetadata:
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"  # TensorBoard's scalar dashboard
    return metadata


def create_writer(log_dir: str | None) -> tf.summary.SummaryWriter:
    """An event-file writer for `log_dir`, or one that writes nothing for None."""
    if log_dir is None:
        return tf.summary.create_noop_writer()
    return tf.summary.create_file_writer(log_dir)


def write_scalar(name: str, value: float, step: int) -> None:
    """Writes a scalar summary to the default writer in TensorBoard's scalar format."""
    tf.summary.write(name, tf.constant(value, tf.float32), step=step, metadata=_scalar_metadata())


def write_scalars(writer: tf.summary.SummaryWriter, step: int, scalars: dict[str, float]) -> None:
    """Writes every `{tag: value}` of `scalars` at `step` with `writer`."""
    with writer.as_default():
        for name, value in scalars.items():
            write_scalar(name, value, step)
