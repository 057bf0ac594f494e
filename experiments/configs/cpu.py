"""Real faces on a CPU: between `smoke` (generated faces) and `paper` (a GPU).

Run: make reproduce DATASET=crops DATASET_ROOT=DIR CONFIG=cpu ALLOW_CPU=1   (face crops)
     make reproduce FFPP_ROOT=DIR SPLITS_DIR=DIR CONFIG=cpu FRAMES=32 ALLOW_CPU=1   (FF++)
(ALLOW_CPU=1: the UBM stages stop any configuration but smoke on a machine without a GPU
unless told to run on the CPU.)

Chosen by measurement (`python -m experiments.bench_ubm_scaling`, BENCHMARKS.md "Real
faces"): on the DFDC face crops (seeded source split, 5,624 pristine training crops),
on a 2-core AMD EPYC with AVX2 only (`lscpu`: "AMD EPYC"), float32, UBMs of R=1 and
F=4, 8, 16, 32 for 100-250 steps of 8 crops; the one with the best validation AUC of
the LeNet on its maps (0.688) is this one, R=1, F=16, 100 steps (about 2 minutes under
load; val 5.42 bits/dim): known-attack test frame AUC 0.663 [0.641, 0.685] (1,163 real
and 1,139 fake test crops), against 0.650 for the same LeNet on grey pixels and 0.676
on RGB pixels. R=1, F=32, 250 steps was level on val (0.6875) at ten times the cost;
across the measured points (57x in training FLOPs) the AUC moved by less than its
interval, so a longer UBM is not expected to help at CPU scale.
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
        nr_filters=16,
        nr_logistic_mix=10,
        dropout_rate=0.5,
        learning_rate=1e-3,
        lr_decay=0.9995,
        # Polyak averaging over the last tenth of the run (`ubm_scaling.point_config`).
        ema_decay=0.9,
        epochs=50.0,  # the step cap below ends training first
        max_steps=100,
        batch_size=8,
        init_batch_size=8,
        eval_every_steps=100,
        checkpoint_every_steps=100,
        eval_batches=50,
    )
    return ExperimentConfig(
        name="cpu",
        faces=FaceSettings(
            compression="raw", methods=PAPER_METHODS, frames_per_video=32, face_finder="fast"
        ),
        ubm=ubm,
        # Smaller, for the localisation score only (not tuned).
        background=dataclasses.replace(ubm, perturbation_rate=0.2),
        detector=DetectorConfig(epochs=10, learning_rate=1e-3, batch_size=64, inputs=INPUT_KINDS),
    )
