"""Hyper-parameters of the PixelCNN++ universal background model and its training.

Defaults follow the reference PixelCNN++ code (Salimans et al., 2017) and the paper's
UBM (Khodabakhsh & Busch, 2020: R=5, F=160, M=10, dropout 0.5, lr 1e-4, 5 epochs).
This module imports no TensorFlow, so binaries can check settings before loading it.
"""

from __future__ import annotations

import dataclasses

# tf.distribute strategies a run can use (see `strategies.make_strategy`).
STRATEGIES: tuple[str, ...] = ("default", "mirrored", "multiworker")
# Keras dtype policies ("" = float32; see `strategies.precision_policy`).
MIXED_PRECISION_POLICIES: tuple[str, ...] = ("", "float32", "mixed_bfloat16", "mixed_float16")
# Dtypes of the convolutions (see `layers.matmul_precision`): bfloat16 runs only them in
# bfloat16 (AMX / AVX512-BF16 CPUs), everything else in the policy's dtype.
MATMUL_DTYPES: tuple[str, ...] = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class UBMConfig:
    """Architecture and optimisation settings of the UBM."""

    nr_resnet: int = 5
    nr_filters: int = 160
    nr_logistic_mix: int = 10
    dropout_rate: float = 0.5
    learning_rate: float = 1e-4
    lr_decay: float = 0.999995  # multiplied into the learning rate every step
    beta1: float = 0.95
    beta2: float = 0.9995
    ema_decay: float = 0.9995  # Polyak averaging; EMA weights are used for evaluation
    batch_size: int = 16
    init_batch_size: int = 16  # batch for the data-dependent initialisation
    epochs: float = 5.0
    max_steps: int = 0  # > 0 caps the number of steps (smoke runs)
    eval_every_steps: int = 1000
    checkpoint_every_steps: int = 1000
    eval_batches: int = 50  # validation batches per evaluation (0 = whole set)
    image_size: int = 64
    mixed_precision: str = ""  # "", "mixed_bfloat16" or "mixed_float16"
    matmul_dtype: str = "float32"  # or "bfloat16": the convolutions only (MATMUL_DTYPES)
    xla: bool = False
    # The CPU-fused forward pass (pixelcnn_pp.fused); False runs the plain port. Same
    # variables either way, so a UBM trained with one loads in the other.
    fused_kernels: bool = True
    seed: int = 0
    # > 0: a background model (Ren et al., NeurIPS 2019): every training value (each
    # channel of each pixel) is replaced by a uniform random one with this probability.
    perturbation_rate: float = 0.0


def validate_config(config: UBMConfig) -> None:
    """Checks the settings a run depends on; raises ValueError naming the bad one."""
    if config.image_size <= 0 or config.image_size % 4:
        raise ValueError(
            f"image_size must be a positive multiple of 4 (PixelCNN++ works at three "
            f"resolutions), got {config.image_size}: crop the faces to e.g. 64."
        )
    for name in ("nr_resnet", "nr_filters", "nr_logistic_mix", "batch_size", "init_batch_size"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}.")
    if config.max_steps < 0:
        raise ValueError(f"max_steps must be >= 0 (0 = no cap), got {config.max_steps}.")
    if config.epochs <= 0 and config.max_steps == 0:
        raise ValueError("Set epochs > 0 or max_steps > 0: there is nothing to train.")
    if config.learning_rate <= 0:
        raise ValueError(f"learning_rate must be positive, got {config.learning_rate}.")
    for name in ("eval_every_steps", "checkpoint_every_steps"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}.")
    if not 0.0 <= config.perturbation_rate < 1.0:
        raise ValueError(
            f"perturbation_rate must be in [0, 1) (0 = the UBM itself; e.g. 0.2 for a "
            f"background model), got {config.perturbation_rate}."
        )
    if config.matmul_dtype not in MATMUL_DTYPES:
        raise ValueError(
            f"Unknown matmul_dtype {config.matmul_dtype!r}: choose one of "
            f"{', '.join(MATMUL_DTYPES)}."
        )
    if config.mixed_precision not in MIXED_PRECISION_POLICIES:
        raise ValueError(
            f"Unknown mixed_precision {config.mixed_precision!r}: choose one of "
            f"{', '.join(repr(p) for p in MIXED_PRECISION_POLICIES)}."
        )
