"""Settings of the LeNet-style detector and its evaluation (paper: Adam 1e-3, 25 epochs).

Free of TensorFlow, so binaries can name the protocols in their flags cheaply.
"""

from __future__ import annotations

import dataclasses

# The paper's evaluation protocols: Table 1 (known attacks), Table 2 (leave-one-out);
# `classifier.protocols` defines them. The tables read these two only.
KNOWN, LEAVE_ONE_OUT = "known", "loo"
PROTOCOLS: tuple[str, ...] = (KNOWN, LEAVE_ONE_OUT)
# Not a table of the paper: one detector trained on real + every method, the model to
# deploy (`export_model`). Its single folder is `detection/all/all/`.
ALL = "all"
DETECTION_PROTOCOLS: tuple[str, ...] = (*PROTOCOLS, ALL)
# What the LeNet reads (`classifier.inputs`): the likelihood map (the method), and
# as baselines the crop's pixels, grey or RGB, and the map with the grey pixels.
MAPS = "maps"
PIXELS_GREY = "pixels_grey"
PIXELS_RGB = "pixels_rgb"
MAPS_AND_GREY = "maps_grey"
INPUT_KINDS: tuple[str, ...] = (MAPS, PIXELS_GREY, PIXELS_RGB, MAPS_AND_GREY)


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """Training and evaluation settings of the detector."""

    epochs: int = 25
    learning_rate: float = 1e-3
    batch_size: int = 64
    balance: str = "class_weights"  # how real/fake imbalance is handled in training
    bootstrap_samples: int = 1000  # resamples over videos for the 95% intervals
    seed: int = 0
    # One detector per kind for the known and leave-one-out protocols: the maps first
    # (the method), then any baselines on the same crops (`classifier.inputs`; the
    # configurations name them).
    inputs: tuple[str, ...] = (MAPS,)
    # The protocols whose tables get the baselines' rows (the maps' detectors are
    # trained for every protocol).
    baseline_protocols: tuple[str, ...] = PROTOCOLS
