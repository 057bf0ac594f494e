"""Procedural faces for the generated FF++-layout dataset: identities, motion, rendering.

Faces are drawn procedurally (skin ellipse with a shaded rim, hair and fringe, ears,
eyes with iris and pupil that blink, brows, nose, mouth that talks) on a textured
background, with lens blur and sensor noise; each identity (skin tone, face shape,
features, hair, colours, background) moves and sees its lighting change a little.
dlib's frontal HOG detector finds such faces (the detector FaceForensics++ crops
with; Roessler et al., ICCV 2019). Everything is a pure function of a seed.
Frames are BGR, as OpenCV writes them.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

SUBPIXEL_BITS = 4  # sub-pixel bits for cv2 drawing
SUBPIXEL_ONE = 1 << SUBPIXEL_BITS

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


def seeded_rng(seed: int, *keys: int) -> np.random.Generator:
    """A generator that is a pure function of the seed and the keys."""
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
    rng = seeded_rng(seed, index, 1)
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
            (int(c[0] * SUBPIXEL_ONE), int(c[1] * SUBPIXEL_ONE)),
            (max(1, int(au * self.w * SUBPIXEL_ONE)), max(1, int(av * self.w * SUBPIXEL_ONE))),
            self.roll + angle,
            start,
            end,
            _colour(color),
            -1 if thickness < 0 else max(1, int(thickness * self.w)),
            cv2.LINE_AA,
            SUBPIXEL_BITS,
        )

    def line(self, u0, v0, u1, v1, color, thickness):
        """Line from (u0, v0) to (u1, v1); thickness in face widths."""
        p0, p1 = self.point(u0, v0), self.point(u1, v1)
        cv2.line(
            self.image,
            (int(p0[0] * SUBPIXEL_ONE), int(p0[1] * SUBPIXEL_ONE)),
            (int(p1[0] * SUBPIXEL_ONE), int(p1[1] * SUBPIXEL_ONE)),
            _colour(color),
            max(1, int(thickness * self.w)),
            cv2.LINE_AA,
            SUBPIXEL_BITS,
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


@dataclasses.dataclass
class RenderedVideo:
    """One identity's original video in memory: noisy frames and their states."""

    identity: Identity
    frames: list[np.ndarray]
    states: list[FrameState]


def render_video(
    identity: Identity, frames: int, width: int, height: int, seed: int
) -> RenderedVideo:
    """The original video of `identity`: `frames` noisy uint8 [H, W, 3] frames."""
    states = [frame_state(identity, t, width, height) for t in range(frames)]
    video = [
        add_sensor_noise(render_face(identity, s), seeded_rng(seed, identity.index, 2, t))
        for t, s in enumerate(states)
    ]
    return RenderedVideo(identity, video, states)
