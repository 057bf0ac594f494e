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
    smoke: bool = False  # True: numbers are not comparable with the paper
