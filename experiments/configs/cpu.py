"""Real faces on a CPU: between `smoke` (generated faces) and `paper` (a GPU).

Run: make reproduce DATASET=crops DATASET_ROOT=DIR CONFIG=cpu   (face crops, e.g. DFDC's)
     make reproduce FFPP_ROOT=DIR SPLITS_DIR=DIR CONFIG=cpu FRAMES=32   (FF++ on a CPU)
The UBM's size and training length were chosen by measurement on the val split of the
DFDC face crops (BENCHMARKS.md, "Real faces"): see `get_config` for the figures.
"""

from __future__ import annotations

import dataclasses

from classifier.config import INPUT_KINDS, DetectorConfig
from data_prep.face_settings import FaceSettings
from data_prep.methods import PAPER_METHODS
from experiments.configs.base import ExperimentConfig
from pixelcnn_pp.config import UBMConfig


def get_config() -> ExperimentConfig:
    """Returns the CPU settings for real faces."""
    ubm = UBMConfig(
        nr_resnet=1,
        nr_filters=32,
        nr_logistic_mix=10,
        dropout_rate=0.5,
        learning_rate=1e-3,
        lr_decay=0.9995,
        ema_decay=0.999,
        epochs=50.0,  # the step cap below ends training first
        max_steps=3000,
        batch_size=8,
        init_batch_size=8,
        eval_every_steps=500,
        checkpoint_every_steps=250,
        eval_batches=25,
    )
    return ExperimentConfig(
        name="cpu",
        faces=FaceSettings(
            compression="raw", methods=PAPER_METHODS, frames_per_video=32, face_finder="fast"
        ),
        ubm=ubm,
        background=dataclasses.replace(ubm, nr_filters=16, max_steps=500, perturbation_rate=0.2),
        detector=DetectorConfig(epochs=10, learning_rate=1e-3, batch_size=64, inputs=INPUT_KINDS),
    )
