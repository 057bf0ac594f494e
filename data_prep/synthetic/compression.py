"""The generated dataset's compression levels: stand-ins for FF++'s c23 and c40.

FaceForensics++ (Roessler et al., ICCV 2019) ships every video at `raw`, `c23` and `c40`
(H.264, constant rate factor 23 and 40). OpenCV's wheels cannot encode H.264, so a
generated level is each raw frame through the codec of `datasets.generated.LEVEL_CODECS`
(JPEG at a light and a heavy quality), decoded again, then written losslessly like
the raw videos: what a reader decodes is exactly what was degraded here.
"""

from __future__ import annotations

import cv2
import numpy as np

from data_prep.datasets.generated import LEVEL_CODECS, RAW


def degrade_frame(frame: np.ndarray, level: str) -> np.ndarray:
    """One BGR uint8 frame [H, W, 3] at a level (`raw`: the frame itself).

    Raises:
      ValueError: a level the generated dataset does not have.
      RuntimeError: this OpenCV cannot encode or decode JPEG.
    """
    if level == RAW:
        return frame
    if level not in LEVEL_CODECS:
        raise ValueError(
            f"Unknown level {level!r} of the generated dataset: use raw or one of "
            f"{', '.join(LEVEL_CODECS)}."
        )
    # 4:2:0 chroma, as H.264 in FF++ (and OpenCV's default, made explicit here).
    params = [
        cv2.IMWRITE_JPEG_QUALITY,
        int(LEVEL_CODECS[level]["quality"]),
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
    ]
    ok, encoded = cv2.imencode(".jpg", frame, params)
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if ok else None
    if decoded is None or decoded.shape != frame.shape:
        raise RuntimeError(f"OpenCV could not encode and decode a JPEG frame for level {level}.")
    return decoded


def psnr(reference: np.ndarray, degraded: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 arrays of one shape (inf if equal)."""
    mse = np.mean((reference.astype(np.float64) - degraded.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))
