"""Settings of the data stages that are not the face stage's: the generated dataset's size.

The face stage's settings are `data_prep.face_settings.FaceSettings`; source and
method names are in `data_prep.methods`.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Size of the generated FF++-layout dataset used by smoke runs."""

    identities: int = 12
    frames: int = 24
    seed: int = 0
