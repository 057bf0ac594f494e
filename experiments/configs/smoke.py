"""A CPU-sized configuration for the generated FF++-layout dataset.

Run: make reproduce   (no variables; 1,504 s on a 2-core AVX2 CPU, see BENCHMARKS.md)
Its tables test the pipeline end to end; they are not comparable with the paper
(95.73% mean frame accuracy on unseen methods).
"""

from __future__ import annotations

import dataclasses

from classifier.config import KNOWN, MAPS, PIXELS_GREY, DetectorConfig
from data_prep.config import SyntheticConfig
from data_prep.face_settings import FaceSettings
from data_prep.methods import PAPER_METHODS
from experiments.configs.base import ExperimentConfig
from pixelcnn_pp.config import UBMConfig


def get_config() -> ExperimentConfig:
    """Returns the smoke settings."""
    ubm = UBMConfig(
        nr_resnet=1,
        nr_filters=32,
        nr_logistic_mix=10,
        dropout_rate=0.5,
        learning_rate=1e-3,
        lr_decay=0.9995,
        # Polyak averaging over ~100 steps: at the reference 0.9995 the averaged
        # weights of a 300-step run would still be mostly the initial ones.
        ema_decay=0.99,
        epochs=50.0,  # the step cap below ends training first
        max_steps=300,
        batch_size=8,
        init_batch_size=8,
        eval_every_steps=100,
        checkpoint_every_steps=100,
        eval_batches=10,
    )
    return ExperimentConfig(
        name="smoke",
        faces=FaceSettings(
            compression="raw", methods=PAPER_METHODS, frames_per_video=0, face_finder="fast"
        ),
        ubm=ubm,
        # A quarter of the UBM's width and a sixth of its steps, to keep the smoke run
        # short: the smoke likelihood-ratio score tests the stage, not the method.
        background=dataclasses.replace(ubm, nr_filters=8, max_steps=50, perturbation_rate=0.2),
        # The maps and one pixel baseline (grey) for Table 1: every LeNet costs 20-40 s
        # on a 2-core CPU; the grey baseline of Table 2 would add about 140 s and the RGB
        # and two-channel baselines about 400 s (the cpu and paper configs train all
        # four for both tables).
        detector=DetectorConfig(
            epochs=10,
            learning_rate=1e-3,
            batch_size=32,
            bootstrap_samples=200,
            inputs=(MAPS, PIXELS_GREY),
            baseline_protocols=(KNOWN,),
        ),
        # More identities rather than more frames: the detector generalises across
        # people, and 8 training identities were too few for it (smoke run, known
        # attacks: 67% with 12 x 24, 84% with 24 x 16, same UBM).
        synthetic=SyntheticConfig(identities=24, frames=16, seed=0),
        smoke=True,
    )
