"""Settings of the LeNet-style detector and its evaluation (paper: Adam 1e-3, 25 epochs).

Free of TensorFlow, so binaries can name the protocols in their flags cheaply.
"""

from __future__ import annotations

import dataclasses

# The paper's evaluation protocols: Table 1 (known attacks), Table 2 (leave-one-out);
# `classifier.protocols` defines them. The tables read these two only.
PROTOCOLS: tuple[str, ...] = ("known", "loo")
# Not a table of the paper: one detector trained on real + every method, the model to
# deploy (`export_model`). Its single folder is `detection/all/all/`.
ALL = "all"
DETECTION_PROTOCOLS: tuple[str, ...] = (*PROTOCOLS, ALL)


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """Training and evaluation settings of the detector."""

    epochs: int = 25
    learning_rate: float = 1e-3
    batch_size: int = 64
    balance: str = "class_weights"  # how real/fake imbalance is handled in training
    bootstrap_samples: int = 1000  # resamples over videos for the 95% intervals
    seed: int = 0
