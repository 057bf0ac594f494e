"""Four manipulations of the generated dataset, standing in for the FF++ methods.

Each is a real image operation leaving its own kind of trace, as FaceForensics++'s
four methods do (Roessler et al., ICCV 2019):

- Deepfakes: the inner face of the source identity, rendered in the target's pose
  and expression, resampled through a low resolution (the autoencoder's low-pass),
  colour-matched and blended into the target frame with a feathered mask.
- Face2Face: the target's own face with the source's expression imposed by a
  smooth landmark-driven warp of the mouth and brows (bilinear resampling).
- FaceSwap: the source's inner face from its own video, aligned to the target's
  landmarks by an affine warp and pasted with Poisson blending (cv2.seamlessClone).
- NeuralTextures: the target's mouth region re-rendered with the source's mouth
  motion as a smoothed, colour-quantised texture, blended in.

Frames are BGR uint8 [H, W, 3].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import cv2
import numpy as np

from data_prep.synthetic.rendering import (
    SUBPIXEL_BITS,
    SUBPIXEL_ONE,
    FrameState,
    Identity,
    RenderedVideo,
    landmarks,
    render_face,
    seeded_rng,
)


def _soft_ellipse(shape, centre, axes, angle: float, feather: float) -> np.ndarray:
    """A float32 [H, W, 1] mask in [0, 1]: a filled ellipse with feathered edges."""
    mask = np.zeros(shape[:2], np.float32)
    cv2.ellipse(
        mask,
        (int(centre[0] * SUBPIXEL_ONE), int(centre[1] * SUBPIXEL_ONE)),
        (max(1, int(axes[0] * SUBPIXEL_ONE)), max(1, int(axes[1] * SUBPIXEL_ONE))),
        angle,
        0,
        360,
        1.0,
        -1,
        cv2.LINE_AA,
        SUBPIXEL_BITS,
    )
    if feather > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), feather)
    return mask[..., None]


def _bbox(mask: np.ndarray, pad: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around the non-zero part of a [H, W, 1] mask, padded."""
    height, width = mask.shape[:2]
    ys, xs = np.nonzero(mask[..., 0] > 0.01)
    return (
        max(int(xs.min()) - pad, 0),
        max(int(ys.min()) - pad, 0),
        min(int(xs.max()) + pad + 1, width),
        min(int(ys.max()) + pad + 1, height),
    )


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def deepfakes(
    target: np.ndarray, target_id: Identity, source_id: Identity, state: FrameState
) -> np.ndarray:
    """Source identity in the target's pose and expression, low-passed and blended.

    Args:
      target: the target's frame, uint8 [H, W, 3]; state: its pose and expression.
    Returns the fake frame, uint8 [H, W, 3].
    """
    return _deepfakes(target, target_id, source_id, state)[0]


def _deepfakes(
    target: np.ndarray, target_id: Identity, source_id: Identity, state: FrameState
) -> tuple[np.ndarray, np.ndarray]:
    """`deepfakes` and its region: bool [H, W], where the blend weight is > 0."""
    lm = landmarks(target_id, state)
    face_w, face_h = lm["size"]
    swapped = render_face(source_id, state)
    centre = lm["centre"] + [0, 0.05 * face_h]
    mask = _soft_ellipse(
        target.shape, centre, (0.4 * face_w, 0.4 * face_h), state.roll, 0.05 * face_w
    )
    x0, y0, x1, y1 = _bbox(mask, 2)
    # The autoencoder's bottleneck: the face passes through 40 % resolution.
    patch = swapped[y0:y1, x0:x1]
    low = (max(8, int(0.4 * (x1 - x0))), max(8, int(0.4 * (y1 - y0))))
    patch = cv2.resize(patch, low, interpolation=cv2.INTER_AREA)
    patch = cv2.resize(patch, (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC)
    # Colour correction towards the target's skin, as the Deepfakes tools do.
    inside = mask[y0:y1, x0:x1, 0] > 0.5
    target_f = target.astype(np.float32)
    swapped[y0:y1, x0:x1] = patch + (target_f[y0:y1, x0:x1][inside].mean(0) - patch[inside].mean(0))
    return _to_uint8(target_f * (1 - mask) + swapped * mask), mask[..., 0] > 0


def face2face(
    target: np.ndarray,
    target_id: Identity,
    state: FrameState,
    source_state: FrameState,
    pair_seed: int,
) -> np.ndarray:
    """The target's own face with the source's expression imposed by a smooth warp of
    the mouth corners, lower lip and brows (Gaussian radial displacement field)."""
    return _face2face(target, target_id, state, source_state, pair_seed)[0]


# Displacements below this many pixels leave a pixel as it was: cv2.remap resamples on
# a 1/32-pixel grid (INTER_TAB_SIZE), so a shift under 1/64 rounds to none. Half that,
# to be safe, bounds the warp's region.
_WARP_REGION_PX = 1.0 / 128


def _face2face(
    target: np.ndarray,
    target_id: Identity,
    state: FrameState,
    source_state: FrameState,
    pair_seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """`face2face` and its region: bool [H, W], where the warp moves a pixel by at
    least `_WARP_REGION_PX` in x or y."""
    height, width = target.shape[:2]
    lm = landmarks(target_id, state)
    face_w = lm["size"][0]
    rng = seeded_rng(pair_seed, 7)
    smile = face_w * rng.uniform(0.03, 0.05)
    lift = face_w * rng.uniform(0.02, 0.04)
    drop = face_w * (0.05 * (source_state.mouth_open - state.mouth_open) + rng.uniform(0.02, 0.03))
    moves = [
        (lm["mouth_left"], (-smile, -0.7 * smile)),
        (lm["mouth_right"], (smile, -0.7 * smile)),
        (lm["lower_lip"], (0.0, drop)),
        (lm["left_brow"], (0.0, -lift)),
        (lm["right_brow"], (0.0, -lift)),
    ]
    sigma = 0.12 * face_w
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy = np.zeros_like(xs), np.zeros_like(ys)
    for (px, py), (mx, my) in moves:
        weight = np.exp(-((xs - px) ** 2 + (ys - py) ** 2) / (2 * sigma**2))
        dx += mx * weight
        dy += my * weight
    # Backward map: the output at x shows the input at x - displacement(x).
    fake = cv2.remap(target, xs - dx, ys - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return fake, np.maximum(np.abs(dx), np.abs(dy)) >= _WARP_REGION_PX


def faceswap(
    target: np.ndarray,
    target_id: Identity,
    state: FrameState,
    source: np.ndarray,
    source_id: Identity,
    source_state: FrameState,
) -> np.ndarray:
    """The source's inner face, from its own frame, aligned to the target's eyes and
    mouth by an affine warp and pasted with Poisson blending."""
    return _faceswap(target, target_id, state, source, source_id, source_state)[0]


def _faceswap(
    target: np.ndarray,
    target_id: Identity,
    state: FrameState,
    source: np.ndarray,
    source_id: Identity,
    source_state: FrameState,
) -> tuple[np.ndarray, np.ndarray]:
    """`faceswap` and its region: bool [H, W], the bounding box of the clone mask.

    The Poisson solve of cv2.seamlessClone rewrites that whole rectangle, not only the
    mask's ellipse (pixels between the two change too), so the rectangle is the region.
    """
    height, width = target.shape[:2]
    lt, ls = landmarks(target_id, state), landmarks(source_id, source_state)
    keys = ("left_eye", "right_eye", "mouth")
    matrix = cv2.getAffineTransform(
        np.float32([ls[k] for k in keys]), np.float32([lt[k] for k in keys])
    )
    aligned = cv2.warpAffine(
        source, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    face_w, face_h = lt["size"]
    centre = (lt["left_eye"] + lt["right_eye"] + lt["mouth"]) / 3 + [0, -0.02 * face_h]
    mask = _soft_ellipse(target.shape, centre, (0.36 * face_w, 0.33 * face_h), state.roll, 0)
    mask = (mask[..., 0] > 0.5).astype(np.uint8) * 255
    mask[:2], mask[-2:], mask[:, :2], mask[:, -2:] = 0, 0, 0, 0  # seamlessClone needs a border
    x, y, w, h = cv2.boundingRect(mask)
    fake = cv2.seamlessClone(aligned, target, mask, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)
    region = np.zeros(mask.shape, bool)
    region[y : y + h, x : x + w] = True
    return fake, region


def neuraltextures(
    target: np.ndarray, target_id: Identity, state: FrameState, source_state: FrameState
) -> np.ndarray:
    """The target's mouth region re-rendered with the source's mouth motion, as a
    smoothed (edge-preserving) and colour-quantised texture without sensor noise."""
    return _neuraltextures(target, target_id, state, source_state)[0]


def _neuraltextures(
    target: np.ndarray, target_id: Identity, state: FrameState, source_state: FrameState
) -> tuple[np.ndarray, np.ndarray]:
    """`neuraltextures` and its region: bool [H, W], where the blend weight is > 0."""
    lm = landmarks(target_id, state)
    face_w, face_h = lm["size"]
    rendered = render_face(
        target_id, dataclasses.replace(state, mouth_open=source_state.mouth_open)
    )
    texture = np.round(cv2.bilateralFilter(rendered, 5, 20, 3) / 16.0) * 16.0
    centre = lm["mouth"] + [0, 0.02 * face_h]
    mask = _soft_ellipse(
        target.shape, centre, (0.32 * face_w, 0.17 * face_h), state.roll, 0.03 * face_w
    )
    return _to_uint8(target.astype(np.float32) * (1 - mask) + texture * mask), mask[..., 0] > 0


def _deepfakes_frame(
    t: int, target: RenderedVideo, source: RenderedVideo, _: int
) -> tuple[np.ndarray, np.ndarray]:
    return _deepfakes(target.frames[t], target.identity, source.identity, target.states[t])


def _face2face_frame(
    t: int, target: RenderedVideo, source: RenderedVideo, pair_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    return _face2face(
        target.frames[t], target.identity, target.states[t], source.states[t], pair_seed
    )


def _faceswap_frame(
    t: int, target: RenderedVideo, source: RenderedVideo, _: int
) -> tuple[np.ndarray, np.ndarray]:
    return _faceswap(
        target.frames[t],
        target.identity,
        target.states[t],
        source.frames[t],
        source.identity,
        source.states[t],
    )


def _neuraltextures_frame(
    t: int, target: RenderedVideo, source: RenderedVideo, _: int
) -> tuple[np.ndarray, np.ndarray]:
    return _neuraltextures(target.frames[t], target.identity, target.states[t], source.states[t])


MaskedFrame = Callable[[int, RenderedVideo, RenderedVideo, int], tuple[np.ndarray, np.ndarray]]
# Frame t of a fake and its manipulation region: (t, target's video, source's video,
# pair seed) -> (uint8 [H, W, 3], bool [H, W]). The region is the manipulation's own
# (blend weight > 0, warp displacement, clone mask): every pixel outside it is the
# target's as it was (FaceSwap: the clone mask's bounding box, which Poisson blending
# rewrites whole).
MASKED_MANIPULATIONS: dict[str, MaskedFrame] = {
    "Deepfakes": _deepfakes_frame,
    "Face2Face": _face2face_frame,
    "FaceSwap": _faceswap_frame,
    "NeuralTextures": _neuraltextures_frame,
}


def _fake_only(
    masked: MaskedFrame,
) -> Callable[[int, RenderedVideo, RenderedVideo, int], np.ndarray]:
    return lambda t, target, source, pair_seed: masked(t, target, source, pair_seed)[0]


# Frame t of a fake: (t, target's video, source's video, pair seed) -> uint8 [H, W, 3].
MANIPULATIONS: dict[str, Callable[[int, RenderedVideo, RenderedVideo, int], np.ndarray]] = {
    name: _fake_only(masked) for name, masked in MASKED_MANIPULATIONS.items()
}
