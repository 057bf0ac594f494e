"""The experiment configuration: one object holding every stage's settings."""

from __future__ import annotations

import dataclasses

from classifier.config import DetectorConfig
from data_prep.config import SyntheticConfig
from data_prep.face_settings import FaceSettings
from pixelcnn_pp.config import UBMConfig


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
    smoke: bool = False  # True: numbers are not comparable with the paper
