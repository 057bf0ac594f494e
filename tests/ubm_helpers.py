"""Writes UBM folders as train_ubm does, without training: for tests of the stages after it."""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf

from data_prep import files
from pixelcnn_pp import run_folder
from pixelcnn_pp.config import UBMConfig
from pixelcnn_pp.ema import PolyakAverage

TINY_UBM = UBMConfig(nr_resnet=1, nr_filters=4, nr_logistic_mix=2, image_size=64)


def write_tiny_ubm(ubm_dir: str, seed: int = 0, config: UBMConfig = TINY_UBM) -> None:
    """A train_ubm-like folder (config.json, one checkpoint) of an untrained tiny UBM.

    The Polyak averages differ from the raw weights (x 0.9), so that using the raw ones
    where the averages belong would show.
    """
    tf.keras.utils.set_random_seed(seed)
    model = run_folder.build_model(config)
    ema = PolyakAverage(model.trainable_variables, config.ema_decay)
    for shadow in ema.shadows:
        shadow.assign(shadow * 0.9)
    holder = run_folder.model_variables_tracker(model)
    tf.train.Checkpoint(model=holder, ema=ema).save(
        os.path.join(run_folder.checkpoint_dir(ubm_dir), "ckpt")
    )
    files.write_json_atomically(
        run_folder.config_path(ubm_dir), {"ubm": dataclasses.asdict(config)}
    )
