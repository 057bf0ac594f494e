"""The UBM run folder: its files, its checkpoints, and the model rebuilt from them.

A run folder (what training writes and `likelihood.load_ubm` reads) holds

    config.json           the UBMConfig under "ubm" (written by the caller, first)
    checkpoints/ckpt-N    tf.train.Checkpoint: model variables, optimizer, Polyak
                          shadows ("ema/shadows/<i>"), step counter
    tensorboard/          event files of `summaries`
    metrics.json          the final metrics (written by the caller)

Everything here is what inference needs, so `likelihood` imports this module and
never `training`. The layout follows the reference PixelCNN++ code's (Salimans et al.,
ICLR 2017; openai/pixel-cnn) one folder per run, with TF2 object-based checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np
import tensorflow as tf

from pixelcnn_pp.config import UBMConfig
from pixelcnn_pp.ema import tf_variable
from pixelcnn_pp.model import PixelCNNpp

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
# Fields that fix the network; a resumed run must agree with the saved ones.
ARCHITECTURE_FIELDS: tuple[str, ...] = (
    "nr_resnet",
    "nr_filters",
    "nr_logistic_mix",
    "image_size",
)
_STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"
_EMA_PREFIX = "ema/shadows/"


def config_path(run_dir: str) -> str:
    """`run_dir/config.json`."""
    return os.path.join(run_dir, CONFIG_FILE)


def metrics_path(run_dir: str) -> str:
    """`run_dir/metrics.json`."""
    return os.path.join(run_dir, METRICS_FILE)


def checkpoint_dir(run_dir: str) -> str:
    """`run_dir/checkpoints`."""
    return os.path.join(run_dir, CHECKPOINT_DIR)


def tensorboard_dir(run_dir: str) -> str:
    """`run_dir/tensorboard`."""
    return os.path.join(run_dir, TENSORBOARD_DIR)


def find_latest_checkpoint(run_dir: str) -> str | None:
    """Path of the newest checkpoint of a run folder, or None where there is none."""
    return tf.train.latest_checkpoint(checkpoint_dir(run_dir))


def latest_checkpoint(run_dir: str) -> str:
    """Path of the newest checkpoint of a UBM folder.

    Raises:
      FileNotFoundError: the folder holds no checkpoint.
    """
    path = find_latest_checkpoint(run_dir)
    if path is None:
        raise FileNotFoundError(
            f"No UBM checkpoint in {checkpoint_dir(run_dir)!r}: run train_ubm first."
        )
    return path


def checkpoint_step(checkpoint_path: str) -> int:
    """The step counter saved in one training checkpoint."""
    return int(tf.train.load_checkpoint(checkpoint_path).get_tensor(_STEP_KEY))


def checkpoint_ema_weights(checkpoint_path: str) -> list[np.ndarray]:
    """The averaged (EMA) weights stored in one training checkpoint, in model order."""
    reader = tf.train.load_checkpoint(checkpoint_path)
    names = [n for n in reader.get_variable_to_shape_map() if n.startswith(_EMA_PREFIX)]
    names.sort(key=lambda n: int(n[len(_EMA_PREFIX) :].split("/")[0]))
    return [reader.get_tensor(n) for n in names]


def read_run_config(run_dir: str) -> dict:
    """The `config.json` of a UBM run folder.

    Raises:
      FileNotFoundError: the folder holds no config.json.
    """
    path = config_path(run_dir)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No {CONFIG_FILE} in {run_dir!r}: it is not a UBM folder; run train_ubm first."
        )
    with open(path) as handle:
        return json.load(handle)


def ubm_config_from_dict(values: dict) -> UBMConfig:
    """A UBMConfig from its saved dict, ignoring fields this version does not know."""
    known = {f.name for f in dataclasses.fields(UBMConfig)}
    return UBMConfig(**{k: v for k, v in values.items() if k in known})


def architecture_clashes(saved: dict, config: UBMConfig) -> list[str]:
    """The ARCHITECTURE_FIELDS on which a saved "ubm" dict and `config` disagree.

    Returns:
      One "name: saved X, now Y" line per clash (empty: the same network).
    """
    return [
        f"{name}: saved {saved.get(name)!r}, now {getattr(config, name)!r}"
        for name in ARCHITECTURE_FIELDS
        if name in saved and saved[name] != getattr(config, name)
    ]


def build_model(config: UBMConfig) -> PixelCNNpp:
    """A PixelCNN++ with the config's architecture, built on a zero batch.

    Builds under the current Keras dtype policy (see `strategies.precision_policy`);
    variables are created in the current tf.distribute scope. Input x float
    [B, image_size, image_size, 3] in [-1, 1] -> params [B, H, W, 10 * nr_logistic_mix].
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


def model_variables_tracker(model: keras.Model) -> tf.Module:
    """A checkpointable holder of all of a model's variables, in model order.

    `trainable` holds the weights; `state` the non-trainable variables, among them the
    dropout layers' random-generator states, which a checkpoint of the Keras model
    object alone leaves out (they are needed for an exact resume).
    """
    holder = tf.Module(name="model_variables")
    holder.trainable = [tf_variable(v) for v in model.trainable_variables]
    holder.state = [tf_variable(v) for v in model.non_trainable_variables]
    return holder
