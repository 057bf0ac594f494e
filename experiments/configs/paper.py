"""The paper's configuration (Khodabakhsh & Busch, BIOSIG 2020) on FF++ raw.

Run: make reproduce FFPP_ROOT=/path/to/ffpp SPLITS_DIR=/path/to/splits CONFIG=paper
Paper: 95.73% mean frame accuracy on unseen methods (Table 2), 98-99% on known ones.
The UBM (R=5, F=160) needs a GPU.
"""

from __future__ import annotations

import dataclasses

from classifier.config import INPUT_KINDS, DetectorConfig
from data_prep.face_settings import FaceSettings
from data_prep.methods import PAPER_METHODS
from experiments.configs.base import ExperimentConfig
from pixelcnn_pp.config import UBMConfig


def get_config() -> ExperimentConfig:
    """Returns the paper's settings."""
    ubm = UBMConfig(
        nr_resnet=5,
        nr_filters=160,
        nr_logistic_mix=10,
        dropout_rate=0.5,
        learning_rate=1e-4,
        epochs=5.0,
        batch_size=16,
    )
    return ExperimentConfig(
        name="paper",
        faces=FaceSettings(
            compression="raw", methods=PAPER_METHODS, frames_per_video=32, face_finder="fast"
        ),
        ubm=ubm,
        # The UBM's architecture and schedule on perturbed crops (20% of the values
        # replaced; not tuned).
        background=dataclasses.replace(ubm, perturbation_rate=0.2),
        # The method and, on the same crops, the LeNet on pixels (grey, RGB) and on both.
        detector=DetectorConfig(epochs=25, learning_rate=1e-3, batch_size=64, inputs=INPUT_KINDS),
    )
