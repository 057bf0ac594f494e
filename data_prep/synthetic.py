"""A miniature FaceForensics++ generated on the fly, in the FF++ layout, losslessly.

With no FF++ download, `make reproduce` runs the whole pipeline of Khodabakhsh &
Busch (BIOSIG 2020) on this dataset. It is a smoke test of the pipeline, not a
stand-in for FF++ (Roessler et al., ICCV 2019): its numbers are never compared
with the paper's.

Faces are drawn procedurally (skin ellipse, hair, ears, eyes with pupils, brows,
nose, mouth on a textured background; lens blur; sensor noise), with an identity
per video (skin tone, face shape, features, hair, colours, background) that moves,
blinks, talks and sees its lighting change a little. dlib's frontal HOG detector
finds such faces. Identities are paired as in FF++ (each identity is the target of
one fake per method: `a_b` and `b_a` for a pair [a, b]) and the pairs are split
train/val/test in FF++ proportions (72/14/14 %). The four manipulations are real
image operations standing in for the FF++ methods, each with its own trace:

- Deepfakes: the inner face of the source identity, rendered in the target's pose
  and expression, resampled through a low resolution (the autoencoder's low-pass),
  colour-matched and blended into the target frame with a feathered mask.
- Face2Face: the target's own face with the source's expression imposed by a
  smooth landmark-driven warp of the mouth and brows (bilinear resampling).
- FaceSwap: the source's inner face from its own video, aligned to the target's
  landmarks by an affine warp and pasted with Poisson blending (cv2.seamlessClone).
- NeuralTextures: the target's mouth region re-rendered with the source's mouth
  motion as a smoothed, colour-quantised texture, blended in.

Videos are FFV1 (lossless; the paper works on raw video) in `.avi` or `.mkv`;
every written video is read back and compared with what was written.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import cv2
import numpy as np
from absl import logging
from tqdm import tqdm

from data_prep.config import METHODS, ORIGINAL, SPLITS
from data_prep.ffpp_layout import videos_dir
from data_prep.files import read_json, write_json_atomically

CONTAINERS: tuple[str, ...] = ("avi", "mkv")
SPLIT_FRACTIONS = {"val": 0.14, "test": 0.14}  # FF++: 720 / 140 / 140 of 1000 videos
MARKER = "synthetic.json"  # written last: the dataset is complete
SETTINGS = ".synthetic_settings.json"  # written first: what a partial run was making
_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT

# Colour palettes (BGR).
_SKIN_LIGHT = np.array([178.0, 198.0, 236.0])
_SKIN_DARK = np.array([62.0, 88.0, 132.0])
_HAIR = np.array(
    [[25, 25, 30], [30, 45, 70], [40, 70, 110], [70, 130, 185], [40, 60, 150], [150, 150, 155]],
    dtype=np.float64,
)
_IRIS = np.array([[60, 40, 20], [120, 90, 40], [70, 110, 60], [40, 60, 90]], dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class Identity:
    """Appearance of one synthetic person (sizes relative to the face width)."""

    index: int
    skin: np.ndarray  # BGR
    hair: np.ndarray
    iris: np.ndarray
    lips: np.ndarray
    clothes: np.ndarray
    face_width: float  # pixels
    aspect: float  # face height / width
    eye_dx: float
    eye_y: float
    eye_size: float
    brow_y: float
    brow_thickness: float
    brow_tilt: float
    nose_length: float
    mouth_width: float
    mouth_y: float
    hair_top: float
    hair_side: float
    fringe: float
    fringe_tilt: float
    background: np.ndarray  # BGR uint8 [H, W, 3]
    # Motion and timing.
    phase: np.ndarray  # [6] phases of the motion, lighting and talking cycles
    blink_period: int
    blink_offset: int


@dataclasses.dataclass(frozen=True)
class FrameState:
    """Pose, expression and lighting of one frame."""

    cx: float
    cy: float
    scale: float
    roll: float  # degrees
    blink: float  # 0 open .. 1 closed
    mouth_open: float  # 0 .. 1
    gain: float
    gradient: float  # horizontal lighting slope


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A textured background: blurred random blocks over a colour ramp."""
    cell = int(rng.integers(6, 14))
    base = rng.uniform(60, 200, 3)
    grid = (height // cell + 2, width // cell + 2)
    # Mostly luminance texture with some colour, as a room or a wall seen out of focus.
    blocks = base + rng.normal(0, 35, (*grid, 1)) + rng.normal(0, 12, (*grid, 3))
    image = cv2.resize(blocks, (width, height), interpolation=cv2.INTER_CUBIC)
    ramp = np.linspace(-1, 1, height)[:, None, None] * rng.uniform(-30, 30, 3)
    image = cv2.GaussianBlur(image + ramp, (0, 0), float(rng.uniform(1.5, 3.0)))
    return np.clip(image, 0, 255).astype(np.uint8)


def make_identity(seed: int, index: int, width: int, height: int) -> Identity:
    """A random identity, a pure function of (seed, index)."""
    rng = _rng(seed, index, 1)
    skin = _SKIN_LIGHT + rng.uniform(0, 1) * (_SKIN_DARK - _SKIN_LIGHT) + rng.normal(0, 6, 3)
    hair = _HAIR[rng.integers(len(_HAIR))] + rng.normal(0, 8, 3)
    return Identity(
        index=index,
        skin=np.clip(skin, 30, 250),
        hair=np.clip(hair, 5, 250),
        iris=np.clip(_IRIS[rng.integers(len(_IRIS))] + rng.normal(0, 8, 3), 5, 250),
        lips=np.clip(skin * np.array([0.55, 0.5, 0.85]) + rng.normal(0, 8, 3), 10, 250),
        clothes=rng.uniform(30, 220, 3),
        face_width=float(rng.uniform(0.33, 0.4) * min(width, height) * 1.2),
        aspect=float(rng.uniform(1.22, 1.4)),
        eye_dx=float(rng.uniform(0.19, 0.23)),
        eye_y=float(rng.uniform(-0.12, -0.06)),
        eye_size=float(rng.uniform(0.1, 0.13)),
        brow_y=float(rng.uniform(0.08, 0.11)),
        brow_thickness=float(rng.uniform(0.035, 0.06)),
        brow_tilt=float(rng.uniform(-8, 8)),
        nose_length=float(rng.uniform(0.14, 0.2)),
        mouth_width=float(rng.uniform(0.15, 0.21)),
        mouth_y=float(rng.uniform(0.22, 0.27)),
        hair_top=float(rng.uniform(0.08, 0.2)),
        hair_side=float(rng.uniform(0.52, 0.6)),
        fringe=float(rng.uniform(0.12, 0.2)),
        fringe_tilt=float(rng.uniform(-12, 12)),
        background=_background(rng, width, height),
        phase=rng.uniform(0, 2 * math.pi, 6),
        blink_period=int(rng.integers(12, 30)),
        blink_offset=int(rng.integers(0, 12)),
    )


def frame_state(identity: Identity, t: int, width: int, height: int) -> FrameState:
    """Pose, expression and lighting of `identity` at frame `t` (smooth in t)."""
    p = identity.phase
    tau = 2 * math.pi * t
    into_blink = (t + identity.blink_offset) % identity.blink_period
    blink = {0: 0.5, 1: 1.0, 2: 0.5}.get(into_blink, 0.0)
    return FrameState(
        cx=width / 2 + 0.05 * width * math.sin(tau / 40 + p[0]),
        cy=height / 2 + 0.04 * height + 0.03 * height * math.sin(tau / 55 + p[1]),
        scale=1.0 + 0.05 * math.sin(tau / 60 + p[2]),
        roll=3.0 * math.sin(tau / 50 + p[3]),
        blink=blink,
        mouth_open=0.5 + 0.5 * math.sin(tau / 9 + p[4]),
        gain=1.0 + 0.06 * math.sin(tau / 35 + p[5]),
        gradient=0.08 * math.sin(tau / 45 + p[0] + p[5]),
    )


class _Face:
    """Face-local drawing: (u, v) in face widths from the face centre, then the pose."""

    def __init__(self, image: np.ndarray, identity: Identity, state: FrameState):
        self.image = image
        self.w = identity.face_width * state.scale
        self.cx, self.cy, self.roll = state.cx, state.cy, state.roll
        self._cos = math.cos(math.radians(state.roll))
        self._sin = math.sin(math.radians(state.roll))

    def point(self, u: float, v: float) -> np.ndarray:
        """Face-local (u, v) (in face widths) to frame pixels [2]."""
        x, y = u * self.w, v * self.w
        return np.array(
            [self.cx + x * self._cos - y * self._sin, self.cy + x * self._sin + y * self._cos]
        )

    def ellipse(self, u, v, au, av, color, thickness=-1.0, angle=0.0, start=0.0, end=360.0):
        """Ellipse centred at (u, v) with semi-axes (au, av); thickness in face widths
        (-1 fills)."""
        c = self.point(u, v)
        cv2.ellipse(
            self.image,
            (int(c[0] * _ONE), int(c[1] * _ONE)),
            (max(1, int(au * self.w * _ONE)), max(1, int(av * self.w * _ONE))),
            self.roll + angle,
            start,
            end,
            _colour(color),
            -1 if thickness < 0 else max(1, int(thickness * self.w)),
            cv2.LINE_AA,
            _SHIFT,
        )

    def line(self, u0, v0, u1, v1, color, thickness):
        """Line from (u0, v0) to (u1, v1); thickness in face widths."""
        p0, p1 = self.point(u0, v0), self.point(u1, v1)
        cv2.line(
            self.image,
            (int(p0[0] * _ONE), int(p0[1] * _ONE)),
            (int(p1[0] * _ONE), int(p1[1] * _ONE)),
            _colour(color),
            max(1, int(thickness * self.w)),
            cv2.LINE_AA,
            _SHIFT,
        )


def _colour(color) -> tuple[float, float, float]:
    return tuple(float(c) for c in color)


def landmarks(identity: Identity, state: FrameState) -> dict[str, np.ndarray]:
    """Frame-pixel positions [2] of the facial features, and `size` (face w, h)."""
    f = _Face(None, identity, state)
    i = identity
    eye_v = i.eye_y * i.aspect
    mouth_v = i.mouth_y * i.aspect
    brow_v = (i.eye_y - i.brow_y) * i.aspect
    return {
        "left_eye": f.point(-i.eye_dx, eye_v),
        "right_eye": f.point(i.eye_dx, eye_v),
        "nose": f.point(0.0, eye_v + i.nose_length * i.aspect),
        "mouth": f.point(0.0, mouth_v),
        "mouth_left": f.point(-i.mouth_width, mouth_v),
        "mouth_right": f.point(i.mouth_width, mouth_v),
        "lower_lip": f.point(0.0, mouth_v + 0.03 + 0.04 * state.mouth_open),
        "left_brow": f.point(-i.eye_dx, brow_v),
        "right_brow": f.point(i.eye_dx, brow_v),
        "centre": np.array([state.cx, state.cy]),
        "size": np.array([f.w, f.w * i.aspect]),
    }


def render_face(identity: Identity, state: FrameState) -> np.ndarray:
    """Renders one noise-free frame: float32 BGR [H, W, 3] in [0, 255]."""
    f = _Face(identity.background.copy(), identity, state)
    i = identity
    ha = i.aspect  # face height in face widths
    skin = i.skin
    # Behind the face: hair volume, clothes, neck, ears.
    f.ellipse(0, -0.18 * ha - 0.3 * i.hair_top, i.hair_side, 0.42 * ha + 0.5 * i.hair_top, i.hair)
    f.ellipse(0, 0.9 * ha, 0.65, 0.35 * ha, i.clothes)
    f.ellipse(0, 0.45 * ha, 0.24, 0.3 * ha, skin * 0.85)
    for s in (-1, 1):
        f.ellipse(s * 0.49, 0.0, 0.07, 0.12 * ha, skin * 0.9)
    # Face, with a darker rim for shading; the fringe over the forehead.
    f.ellipse(0, 0, 0.5, 0.5 * ha, skin * 0.75)
    f.ellipse(0, -0.02 * ha, 0.46, 0.47 * ha, skin)
    f.ellipse(
        0,
        -0.5 * ha + 0.5 * i.fringe,
        0.5,
        i.fringe * ha,
        i.hair,
        angle=i.fringe_tilt,
        start=180,
        end=360,
    )
    # Brows; eyes (white, iris, pupil; lids close when blinking).
    eye_v = i.eye_y * ha
    open_h = i.eye_size * 0.5 * (1.0 - state.blink)
    for s in (-1, 1):
        u = s * i.eye_dx
        f.ellipse(
            u,
            eye_v - i.brow_y * ha,
            0.12,
            0.03,
            np.minimum(0.6 * i.hair, 0.45 * skin),  # brows stay darker than skin
            thickness=i.brow_thickness,
            angle=s * i.brow_tilt,
            start=190,
            end=350,
        )
        if open_h > 0.01:
            f.ellipse(u, eye_v, i.eye_size, open_h, (235, 235, 235))
            f.ellipse(u, eye_v, 0.45 * i.eye_size, min(open_h, 0.45 * i.eye_size), i.iris)
            f.ellipse(u, eye_v, 0.2 * i.eye_size, min(open_h, 0.2 * i.eye_size), (15, 15, 15))
        f.ellipse(
            u,
            eye_v,
            i.eye_size,
            max(open_h, 0.012),
            skin * 0.45,
            thickness=0.02,
            start=180,
            end=360,
        )
    # Nose: ridge shadow and nostrils.
    tip = eye_v + i.nose_length * ha
    f.line(0.02, eye_v + 0.03, 0.05, tip, skin * 0.72, 0.025)
    f.ellipse(0, tip, 0.08, 0.025, skin * 0.6, start=0, end=180)
    # Mouth: lips, opening, teeth.
    mouth_v = i.mouth_y * ha
    open_h = 0.012 + 0.05 * state.mouth_open
    f.ellipse(0, mouth_v, i.mouth_width, 0.03 + 0.8 * open_h, i.lips)
    f.ellipse(0, mouth_v, 0.8 * i.mouth_width, open_h, (35, 25, 60))
    if state.mouth_open > 0.5:
        f.ellipse(0, mouth_v - 0.5 * open_h, 0.6 * i.mouth_width, 0.35 * open_h, (225, 225, 225))
    # Lighting (global gain, horizontal slope), then lens blur.
    out = f.image.astype(np.float32)
    ramp = np.linspace(-1, 1, out.shape[1], dtype=np.float32)[None, :, None]
    out *= state.gain * (1.0 + state.gradient * ramp)
    out = cv2.GaussianBlur(out, (0, 0), 0.8)
    return np.clip(out, 0, 255)


def add_sensor_noise(clean: np.ndarray, rng: np.random.Generator, sigma: float = 2.5) -> np.ndarray:
    """Adds Gaussian sensor noise to a float frame; returns uint8 [H, W, 3]."""
    noisy = clean + rng.normal(0, sigma, clean.shape).astype(np.float32)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def _soft_ellipse(shape, centre, axes, angle: float, feather: float) -> np.ndarray:
    """A float32 [H, W, 1] mask in [0, 1]: a filled ellipse with feathered edges."""
    mask = np.zeros(shape[:2], np.float32)
    cv2.ellipse(
        mask,
        (int(centre[0] * _ONE), int(centre[1] * _ONE)),
        (max(1, int(axes[0] * _ONE)), max(1, int(axes[1] * _ONE))),
        angle,
        0,
        360,
        1.0,
        -1,
        cv2.LINE_AA,
        _SHIFT,
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
    return _to_uint8(target_f * (1 - mask) + swapped * mask)


def face2face(
    target: np.ndarray,
    target_id: Identity,
    state: FrameState,
    source_state: FrameState,
    pair_seed: int,
) -> np.ndarray:
    """The target's own face with the source's expression imposed by a smooth warp of
    the mouth corners, lower lip and brows (Gaussian radial displacement field)."""
    height, width = target.shape[:2]
    lm = landmarks(target_id, state)
    face_w = lm["size"][0]
    rng = _rng(pair_seed, 7)
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
    return cv2.remap(target, xs - dx, ys - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


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
    return cv2.seamlessClone(aligned, target, mask, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)


def neuraltextures(
    target: np.ndarray, target_id: Identity, state: FrameState, source_state: FrameState
) -> np.ndarray:
    """The target's mouth region re-rendered with the source's mouth motion, as a
    smoothed (edge-preserving) and colour-quantised texture without sensor noise."""
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
    return _to_uint8(target.astype(np.float32) * (1 - mask) + texture * mask)


# --- splits, video files, the dataset -------------------------------------------------


def pair_identities(identities: int, seed: int) -> dict[str, list[list[str]]]:
    """Random [target, source] pairs of ids ("000", ...) split 72/14/14 % as in FF++.

    Raises:
      ValueError: fewer than 6 identities (3 pairs, one per split) or an odd number.
    """
    if identities < 6 or identities % 2:
        raise ValueError(
            f"identities must be even and at least 6 (one pair per split), got {identities}."
        )
    width = max(3, len(str(identities - 1)))
    ids = [f"{i:0{width}d}" for i in range(identities)]
    order = _rng(seed, 0).permutation(identities)
    pairs = [[ids[order[2 * i]], ids[order[2 * i + 1]]] for i in range(identities // 2)]
    n_val = max(1, round(len(pairs) * SPLIT_FRACTIONS["val"]))
    n_test = max(1, round(len(pairs) * SPLIT_FRACTIONS["test"]))
    n_train = len(pairs) - n_val - n_test
    return {
        "train": pairs[:n_train],
        "val": pairs[n_train : n_train + n_val],
        "test": pairs[n_train + n_val :],
    }


def write_video(path: str, frames: list[np.ndarray], fps: float) -> None:
    """Writes BGR uint8 frames losslessly (FFV1) and checks them by reading back.

    Written under a hidden temporary name, renamed when verified.

    Raises:
      RuntimeError: this OpenCV cannot write FFV1, or the read-back differs.
    """
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    ext = os.path.splitext(name)[1]
    tmp = os.path.join(folder, f".{name}.partial{ext}")
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"FFV1"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(
            f"OpenCV cannot write FFV1 video {tmp}: install opencv-python-headless with "
            "FFmpeg support."
        )
    for frame in frames:
        writer.write(frame)
    writer.release()
    capture = cv2.VideoCapture(tmp)
    read = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if read >= len(frames) or not np.array_equal(frame, frames[read]):
            capture.release()
            raise RuntimeError(
                f"Video {tmp} does not read back as written: FFV1 is not lossless here."
            )
        read += 1
    capture.release()
    if read != len(frames):
        raise RuntimeError(f"Video {tmp} reads back {read} of {len(frames)} frames.")
    os.replace(tmp, path)


@dataclasses.dataclass
class _Video:
    """One identity's original video in memory: noisy frames and their states."""

    identity: Identity
    frames: list[np.ndarray]
    states: list[FrameState]


def _original(identity: Identity, frames: int, width: int, height: int, seed: int) -> _Video:
    states = [frame_state(identity, t, width, height) for t in range(frames)]
    video = [
        add_sensor_noise(render_face(identity, s), _rng(seed, identity.index, 2, t))
        for t, s in enumerate(states)
    ]
    return _Video(identity, video, states)


def _fake_frame(method: str, t: int, target: _Video, source: _Video, pair_seed: int) -> np.ndarray:
    """Frame t of the `method` fake with `target`'s video and `source`'s face."""
    frame, state, ident = target.frames[t], target.states[t], target.identity
    if method == "Deepfakes":
        return deepfakes(frame, ident, source.identity, state)
    if method == "Face2Face":
        return face2face(frame, ident, state, source.states[t], pair_seed)
    if method == "FaceSwap":
        return faceswap(frame, ident, state, source.frames[t], source.identity, source.states[t])
    if method == "NeuralTextures":
        return neuraltextures(frame, ident, state, source.states[t])
    raise ValueError(f"Unknown method {method!r}.")


def generate_synthetic_ffpp(
    out_dir: str,
    identities: int = 12,
    frames: int = 24,
    seed: int = 0,
    width: int = 192,
    height: int = 160,
    fps: float = 25.0,
    container: str = "avi",
    methods: tuple[str, ...] = METHODS,
) -> dict[str, Any]:
    """Writes a miniature FF++ (raw, lossless) with split files under `out_dir`.

    Layout: `original_sequences/youtube/raw/videos/<id>.<container>`,
    `manipulated_sequences/<method>/raw/videos/<target>_<source>.<container>`,
    `splits/{train,val,test}.json`. Generation is deterministic; videos already
    written by an earlier run with the same settings are kept, so an interrupted
    run resumes.

    Args:
      out_dir: output folder (created).
      identities: number of people (even, >= 6); one original video each.
      frames: frames per video (>= 2).
      seed: everything generated is a pure function of the seed.
      width, height: frame size in pixels (>= 96 x 96).
      fps: frame rate written in the container.
      container: "avi" or "mkv" (both FFV1).
      methods: manipulations to write.

    Returns:
      A summary (also in `out_dir/synthetic.json`): `settings`, `pairs` per split,
      `videos` per source, `splits_dir`.

    Raises:
      ValueError: bad sizes, container or method, or `out_dir` holds a dataset made
        with other settings.
      RuntimeError: OpenCV cannot write FFV1 losslessly.
    """
    if frames < 2:
        raise ValueError(f"frames must be at least 2, got {frames}.")
    if width < 96 or height < 96:
        raise ValueError(f"Frames must be at least 96x96 pixels, got {width}x{height}.")
    if container not in CONTAINERS:
        raise ValueError(f"container must be one of {', '.join(CONTAINERS)}, got {container!r}.")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown methods {unknown}: use a subset of {', '.join(METHODS)}.")
    pairs = pair_identities(identities, seed)
    settings = {
        "identities": identities,
        "frames": frames,
        "seed": seed,
        "width": width,
        "height": height,
        "fps": fps,
        "container": container,
    }
    marker = os.path.join(out_dir, MARKER)
    settings_path = os.path.join(out_dir, SETTINGS)
    for path in (marker, settings_path):
        saved = read_json(path)
        if saved is not None and saved.get("settings") != settings:
            raise ValueError(
                f"{out_dir} holds a synthetic dataset made with other settings "
                f"({saved.get('settings')}): choose another --out or delete it."
            )
    # The settings go first, so a resumed run can tell its own partial output.
    write_json_atomically(settings_path, {"settings": settings})
    splits_dir = os.path.join(out_dir, "splits")
    os.makedirs(splits_dir, exist_ok=True)
    for split in SPLITS:
        with open(os.path.join(splits_dir, f"{split}.json"), "w") as f:
            json.dump(pairs[split], f, indent=2)
            f.write("\n")

    def path_of(method: str, video: str) -> str:
        return os.path.join(videos_dir(out_dir, method, "raw"), f"{video}.{container}")

    counts = {ORIGINAL: 0, **{m: 0 for m in methods}}
    all_pairs = [pair for split in SPLITS for pair in pairs[split]]
    for a, b in tqdm(all_pairs, unit="pair", desc="synthetic"):
        videos = {
            name: _original(
                make_identity(seed, int(name), width, height), frames, width, height, seed
            )
            for name in (a, b)
        }
        for name, video in videos.items():
            if not os.path.exists(path_of(ORIGINAL, name)):
                write_video(path_of(ORIGINAL, name), video.frames, fps)
            counts[ORIGINAL] += 1
        for target, source in ((a, b), (b, a)):
            pair_seed = seed * 1_000_003 + int(target) * 1009 + int(source)
            for method in methods:
                path = path_of(method, f"{target}_{source}")
                if not os.path.exists(path):
                    fake = [
                        _fake_frame(method, t, videos[target], videos[source], pair_seed)
                        for t in range(frames)
                    ]
                    write_video(path, fake, fps)
                counts[method] += 1
    summary = {
        "settings": settings,
        "pairs": pairs,
        "videos": counts,
        "splits_dir": splits_dir,
    }
    write_json_atomically(marker, summary)
    logging.info(
        "Synthetic FF++ in %s: %s videos; train/val/test pairs %s.",
        out_dir,
        counts,
        "/".join(str(len(pairs[s])) for s in SPLITS),
    )
    return summary
