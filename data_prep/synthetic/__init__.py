"""A miniature FaceForensics++ generated on the fly, in the FF++ layout.

With no FF++ download, `make reproduce` runs the whole pipeline of Khodabakhsh &
Busch (BIOSIG 2020) on this dataset. It is a smoke test of the pipeline, not a
stand-in for FF++ (Roessler et al., ICCV 2019): its numbers are never compared with
the paper's. `rendering` draws the faces, `manipulations` makes the four fakes,
`assembly` pairs, splits and writes the videos, `compression` makes the stand-ins for
FF++'s c23 and c40; `datasets.generated` reads it back.
"""

from data_prep.datasets.generated import MARKER
from data_prep.synthetic.assembly import (
    CONTAINERS,
    generate_synthetic_ffpp,
    read_video,
    write_video,
)

__all__ = ["CONTAINERS", "MARKER", "generate_synthetic_ffpp", "read_video", "write_video"]
