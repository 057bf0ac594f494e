"""The experiment configuration: one object holding every stage's settings.

`validate` is the one place where a configuration's values are checked (each binary
calls it through `experiments.cli` before anything is written); `derive` fills in the
settings that follow from an override (the linear learning-rate scaling of a UBM batch).
"""

from __future__ import annotations

import dataclasses

from absl import logging

from classifier.config import PROTOCOLS, DetectorConfig
from data_prep.config import SyntheticConfig
from data_prep.face_settings import FaceSettings
from pixelcnn_pp.config import MATMUL_DTYPES, MIXED_PRECISION_POLICIES, UBMConfig, validate_config


@dataclasses.dataclass(frozen=True)
class LikelihoodConfig:
    """How extract_likelihoods runs the UBM over the crops (not what it computes)."""

    batch_size: int = 64  # face crops per forward pass
    # Keras policy of the forward passes: "" (float32), mixed_bfloat16 or mixed_float16.
    mixed_precision: str = ""
    # bfloat16: only the UBM's convolutions in bfloat16 (AMX / AVX512-BF16 CPUs, GPUs);
    # mean difference to float32 maps ~0.04 nats per pixel.
    matmul_dtype: str = "float32"


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """All settings of one reproduction run; `name` is recorded in every output."""

    name: str
    faces: FaceSettings
    ubm: UBMConfig
    detector: DetectorConfig
    synthetic: SyntheticConfig = dataclasses.field(default_factory=SyntheticConfig)
    # The background PixelCNN++ of the likelihood-ratio localisation score (Ren et al.,
    # NeurIPS 2019): `train_ubm --background`; its perturbation_rate is > 0.
    background: UBMConfig | None = None
    likelihoods: LikelihoodConfig = dataclasses.field(default_factory=LikelihoodConfig)
    smoke: bool = False  # True: numbers are not comparable with the paper


def scaled_learning_rate(config: UBMConfig, batch_size: int) -> float:
    """The linear scaling rule (Goyal et al. 2017): lr x batch_size / the config's batch."""
    return config.learning_rate * batch_size / config.batch_size


def derive(
    config: ExperimentConfig, base: ExperimentConfig, overridden: frozenset[str]
) -> ExperimentConfig:
    """`config` (= `base` with the dotted `overridden` fields set) with what follows.

    A UBM (or background model) batch other than the base's scales its learning rate
    linearly unless the learning rate is overridden too, and caps the initialisation
    batch at the batch; a precision of "float32" is spelt "" as in the configs.
    """
    sections = {}
    for section in ("ubm", "background"):
        ubm, before = getattr(config, section), getattr(base, section)
        if ubm is None or before is None:
            continue
        if f"{section}.batch_size" in overridden and ubm.batch_size != before.batch_size:
            if f"{section}.learning_rate" not in overridden and ubm.batch_size > 0:
                rate = scaled_learning_rate(before, ubm.batch_size)
                logging.info(
                    "%s: global batch %d instead of %d: learning rate %.3g -> %.3g (linear "
                    "scaling; --config.%s.learning_rate sets it explicitly).",
                    section,
                    ubm.batch_size,
                    before.batch_size,
                    before.learning_rate,
                    rate,
                    section,
                )
                ubm = dataclasses.replace(ubm, learning_rate=rate)
            ubm = dataclasses.replace(
                ubm, init_batch_size=max(1, min(ubm.init_batch_size, ubm.batch_size))
            )
        if ubm.mixed_precision == "float32":
            ubm = dataclasses.replace(ubm, mixed_precision="")
        sections[section] = ubm
    if config.likelihoods.mixed_precision == "float32":
        sections["likelihoods"] = dataclasses.replace(config.likelihoods, mixed_precision="")
    return dataclasses.replace(config, **sections)


def validate(config: ExperimentConfig) -> None:
    """Checks every setting a stage depends on; raises ValueError naming the bad field."""
    for section in ("ubm", "background"):
        ubm = getattr(config, section)
        if ubm is None:
            continue
        try:
            validate_config(ubm)
        except ValueError as err:
            raise ValueError(f"{section}: {err}") from None
    if config.ubm.perturbation_rate != 0:
        raise ValueError(
            "ubm.perturbation_rate applies to the background model only: set "
            "--config.background.perturbation_rate and train it with train_ubm --background."
        )
    if config.background is not None and config.background.perturbation_rate <= 0:
        raise ValueError(
            "background.perturbation_rate must be > 0 (a background model is trained on "
            f"perturbed crops, e.g. 0.2), got {config.background.perturbation_rate}."
        )
    try:
        config.faces.check()
    except ValueError as err:
        raise ValueError(f"faces: {err}") from None
    for name in ("epochs", "batch_size", "bootstrap_samples"):
        if getattr(config.detector, name) < 1:
            raise ValueError(
                f"detector.{name} must be at least 1, got {getattr(config.detector, name)}."
            )
    unknown = sorted(set(config.detector.baseline_protocols) - set(PROTOCOLS))
    if unknown:
        raise ValueError(
            f"detector.baseline_protocols: {', '.join(unknown)} is no table's protocol; "
            f"name any of {', '.join(PROTOCOLS)} (or none)."
        )
    if config.detector.learning_rate <= 0:
        raise ValueError(
            f"detector.learning_rate must be positive, got {config.detector.learning_rate}."
        )
    extraction = config.likelihoods
    if extraction.batch_size < 1:
        raise ValueError(f"likelihoods.batch_size must be at least 1, got {extraction.batch_size}.")
    if extraction.mixed_precision not in MIXED_PRECISION_POLICIES:
        raise ValueError(
            f"likelihoods.mixed_precision={extraction.mixed_precision!r} is unknown: use "
            "float32, mixed_bfloat16 or mixed_float16."
        )
    if extraction.matmul_dtype not in MATMUL_DTYPES:
        raise ValueError(
            f"likelihoods.matmul_dtype={extraction.matmul_dtype!r} is unknown: use "
            f"{' or '.join(MATMUL_DTYPES)}."
        )
    if config.synthetic.frames < 2:
        raise ValueError(f"synthetic.frames must be at least 2, got {config.synthetic.frames}.")
