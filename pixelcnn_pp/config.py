"""Hyper-parameters of the PixelCNN++ universal background model and its training.

Defaults follow the reference PixelCNN++ code (Salimans et al., 2017) and the paper's
UBM (Khodabakhsh & Busch, 2020: R=5, F=160, M=10, dropout 0.5, lr 1e-4, 5 epochs).
"""

from __future__ import annotations

import dataclasses


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
    xla: bool = False
    seed: int = 0
