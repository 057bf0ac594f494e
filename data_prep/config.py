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
    # Levels written: raw and the stand-ins for FF++'s c23 and c40 (each raw frame
    # through JPEG, stored losslessly; `data_prep.datasets.generated`). For the smoke
    # dataset they add about 11 s of CPU to 17 s, so every run has them.
    compressions: tuple[str, ...] = ("raw", "c23", "c40")
