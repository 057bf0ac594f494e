"""Names of video sources: `original` (pristine) and the manipulation methods.

Method names come from the data (the folders a dataset adapter finds); this module
only knows how to order and abbreviate the ones it has heard of, so that tables list
FF++'s methods in the paper's order and any other method after them.
"""

from __future__ import annotations

from collections.abc import Iterable

# The `method` of pristine videos (and of their crops).
ORIGINAL = "original"
SPLITS: tuple[str, ...] = ("train", "val", "test")
# The four methods of the paper's Tables 1 and 2 (FF++ c0, 2019), in its column order.
PAPER_METHODS: tuple[str, ...] = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
# Every method folder of FF++'s `manipulated_sequences/` (FaceShifter and
# DeepFakeDetection came with later releases).
FFPP_METHODS: tuple[str, ...] = PAPER_METHODS + ("FaceShifter", "DeepFakeDetection")
_ABBREVIATIONS: dict[str, str] = {
    "Deepfakes": "DF",
    "Face2Face": "F2F",
    "FaceSwap": "FS",
    "NeuralTextures": "NT",
    "FaceShifter": "FSh",
    "DeepFakeDetection": "DFD",
}


def abbreviation(method: str) -> str:
    """The short column name of a method (`DF`, `F2F`, ...); unknown ones keep their name."""
    return _ABBREVIATIONS.get(method, method)


def order_methods(methods: Iterable[str]) -> tuple[str, ...]:
    """Distinct method names, FF++'s in their usual order first, then the rest sorted.

    `original` is not a method and is left out.
    """
    found = {m for m in methods if m != ORIGINAL}
    known = [m for m in FFPP_METHODS if m in found]
    return tuple(known + sorted(found - set(known)))
