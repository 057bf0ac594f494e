"""The published numbers our tables are compared with (frame accuracy, %, FF++ raw).

Khodabakhsh & Busch, "A Generalizable Deepfake Detector based on Neural Conditional
Distribution Modelling", BIOSIG 2020: Table 1 (known attacks, with the baselines it
quotes from FaceForensics++, Roessler et al., ICCV 2019, on raw videos) and Table 2
(leave-one-out: the method under test is never seen in training).
"""

from __future__ import annotations

from data_prep.methods import PAPER_METHODS, abbreviation

# The paper's columns: DF F2F FS NT. Any other method has no published number.
COLUMNS: tuple[str, ...] = tuple(abbreviation(m) for m in PAPER_METHODS)


def _row(df: float, f2f: float, fs: float, nt: float) -> dict[str, float]:
    return dict(zip(COLUMNS, (df, f2f, fs, nt), strict=True))


PAPER_METHOD = "Khodabakhsh & Busch (paper)"

# Table 1: known attacks.
TABLE1_BASELINES: tuple[tuple[str, dict[str, float]], ...] = (
    ("Steg. Features + SVM", _row(99.03, 99.13, 98.27, 99.88)),
    ("Cozzolino et al.", _row(98.83, 98.56, 98.89, 99.88)),
    ("Bayar and Stamm", _row(99.28, 98.79, 98.98, 98.78)),
    ("Rahmouni et al.", _row(98.03, 98.96, 98.94, 96.06)),
    ("MesoNet", _row(98.41, 97.96, 96.07, 97.05)),
    ("XceptionNet", _row(99.59, 99.61, 99.14, 99.36)),
)
TABLE1_PAPER: dict[str, float] = _row(99.30, 98.25, 99.11, 98.46)

# Table 2: leave-one-out (unseen method).
TABLE2_PAPER: dict[str, float] = _row(89.26, 98.41, 96.80, 98.44)
TABLE2_PAPER_AVG = 95.73
