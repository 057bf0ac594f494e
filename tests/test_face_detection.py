"""dlib face detection, the FF++ crop, and the fast detector against the reference."""

from __future__ import annotations

import pathlib

import cv2
import numpy as np
import pytest

from data_prep.face_detection import (
    FaceDetector,
    box_iou,
    crop_box,
    crop_face,
    crop_video,
    pyramid_level,
    track_faces,
)
from data_prep.face_settings import EXACT, FAST, FaceSettings, FastSettings
from data_prep.frames import VideoFrames, count_frames, open_video, read_frames
from data_prep.synthetic import write_video
from data_prep.synthetic.rendering import make_identity, render_video

# --- frames that decode, not the declared count --------------------------------------------

DECLARED = 10


def _truncated(tmp_path, frames) -> tuple[str, int]:
    """An .avi of `frames` cut to 60%: it declares len(frames) frames, fewer decode."""
    full = str(tmp_path / "full.avi")
    write_video(full, frames, fps=25)
    path = tmp_path / "truncated.avi"
    data = pathlib.Path(full).read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    capture = open_video(str(path))
    declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    decoded = count_frames(str(path))
    assert declared == len(frames) and decoded < declared - 1  # the header really lies
    return str(path), decoded


@pytest.fixture
def noise_video(tmp_path, rng):
    frames = [rng.integers(0, 256, (64, 80, 3), dtype=np.uint8) for _ in range(DECLARED)]
    return _truncated(tmp_path, frames)


def test_frames_of_a_truncated_video_are_sampled_from_those_that_decode(noise_video, caplog):
    path, decoded = noise_video
    assert [i for i, _ in read_frames(path)] == list(range(decoded))
    assert [i for i, _ in read_frames(path, 3)] == [0, decoded // 2, decoded - 1]
    assert f"declares 10 frames but {decoded} decode" in caplog.text


def test_sampling_from_a_lying_header_asks_for_a_second_pass(noise_video):
    path, decoded = noise_video
    first = VideoFrames(path, 3)
    # Sampled from the 10 declared (0, 4, 9): only those that decode come.
    assert [i for i, _ in first] == [i for i in (0, 4, 9) if i < decoded]
    assert (first.declared, first.decoded, first.resample) == (DECLARED, decoded, True)
    second = VideoFrames(path, 3, num_frames=first.decoded)
    assert [i for i, _ in second] == [0, decoded // 2, decoded - 1]
    assert not second.resample and second.mismatch
    every = VideoFrames(path)
    assert len(list(every)) == decoded and not every.resample  # no count needed


def test_an_intact_video_is_read_in_one_pass(tmp_path, rng):
    frames = [rng.integers(0, 256, (64, 80, 3), dtype=np.uint8) for _ in range(DECLARED)]
    write_video(str(tmp_path / "v.avi"), frames, fps=25)
    reader = VideoFrames(str(tmp_path / "v.avi"), 3, max_frames=7)
    assert [i for i, _ in reader] == [0, 3, 6]
    assert (reader.declared, reader.decoded) == (DECLARED, 7)
    assert not reader.resample and not reader.mismatch


def test_crop_video_of_a_truncated_video_keeps_its_frames_and_both_counts(tmp_path):
    rendered = render_video(make_identity(3, 0, 192, 160), DECLARED, 192, 160, seed=3)
    path, decoded = _truncated(tmp_path, rendered.frames)
    crops = crop_video(path, FaceSettings(frames_per_video=3, face_finder=EXACT))
    assert (crops.frames_declared, crops.frames_decoded) == (DECLARED, decoded)
    assert crops.frames_read == 3 and crops.frames == [0, decoded // 2, decoded - 1]


# --- geometry ------------------------------------------------------------------------------


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)


def test_crop_box_inside_the_frame_is_centred_and_scaled():
    # Face 100 x 80 centred at (300, 200): square of side int(1.3 * 100) = 130.
    assert crop_box((250, 160, 350, 240), 640, 480) == (235, 135, 365, 265)


def test_crop_box_clamped_at_the_top_left():
    box = crop_box((-20, -10, 60, 70), 640, 480)  # 80 x 80 face over the corner
    x0, y0, x1, y1 = box
    assert (x0, y0) == (0, 0)  # the corner is clamped into the frame
    assert x1 - x0 == y1 - y0 == int(1.3 * 80)  # the side is kept (it fits)


def test_crop_box_clamped_at_the_bottom_right_stays_square_and_inside():
    x0, y0, x1, y1 = crop_box((580, 430, 660, 510), 640, 480)  # 80 px face past the corner
    assert x1 - x0 == y1 - y0  # square
    assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480  # inside
    assert x1 == 640 or y1 == 480  # shortened to fit, not shifted away
    assert x1 - x0 < int(1.3 * 80)
    # A face entirely outside the frame has no crop.
    assert crop_box((700, 500, 720, 520), 640, 480) is None


def test_crop_face_is_rgb_and_resized():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[..., 0] = 10  # blue (OpenCV frames are BGR)
    frame[..., 2] = 200  # red
    crop = crop_face(frame, (20, 10, 90, 80), 64)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    assert crop[..., 0].min() == 200 and crop[..., 2].max() == 10


def test_pyramid_level_of_reference_box_sizes():
    # The reference finds faces at sides 43.41 * 1.2**k (224 px at level 9).
    assert pyramid_level(224) == pytest.approx(9.0, abs=0.01)
    assert pyramid_level(386) == pytest.approx(12.0, abs=0.02)


# --- the fast tracker's logic, with a scripted detector -------------------------------------


class ScriptedDetector:
    """Answers detections from a script of boxes per frame index; records the calls."""

    def __init__(self, boxes: dict[int, tuple | None], interval: int = 12):
        self.boxes = boxes
        self.settings = FastSettings(keyframe_interval=interval)
        self.calls: list[int] = []

    def _answer(self, frame: np.ndarray):
        index = int(frame[0, 0, 0])
        self.calls.append(index)
        box = self.boxes[index]
        return None if box is None else np.array(box, np.float64)

    def detect_near(self, frame, hint):
        return self._answer(frame)

    def detect_exact(self, frame):
        return self._answer(frame)


def _stream(n: int):
    return [(i, np.full((2, 2, 3), i, np.uint8)) for i in range(n)]


def _track(boxes, n, detection=FAST):
    detector = ScriptedDetector(boxes)
    out = [(i, b) for i, _, b in track_faces(_stream(n), detector, detection)]
    assert [i for i, _ in out] == list(range(n))  # every frame, in order
    return dict(out), detector.calls


def test_fast_interpolates_between_agreeing_keyframes():
    truth = {i: (100 + 0.8 * i, 50 + 0.4 * i, 200 + 0.8 * i, 150 + 0.4 * i) for i in range(25)}
    boxes, calls = _track(truth, 25)
    assert calls == [0, 12, 24]
    for i in range(25):
        np.testing.assert_allclose(boxes[i], truth[i])


def test_fast_bisects_a_span_whose_keyframes_disagree():
    a, b = (100, 100, 200, 200), (300, 100, 420, 220)
    truth = {i: a if i < 17 else b for i in range(25)}  # the face jumps at frame 17
    boxes, calls = _track(truth, 25)
    for i in range(25):
        np.testing.assert_allclose(boxes[i], truth[i])
    assert 3 < len(calls) < 25 and 16 in calls and 17 in calls


def test_fast_refines_a_pyramid_level_jump_only_twice():
    # The same face found one pyramid level larger from frame 17 on (IoU ~0.69).
    small, large = (100, 100, 200, 200), (90, 90, 210, 210)
    truth = {i: small if i < 17 else large for i in range(25)}
    boxes, calls = _track(truth, 25)
    assert calls == [0, 12, 24, 18, 15]  # two bisection steps, then interpolation
    for i in list(range(16)) + list(range(18, 25)):
        np.testing.assert_allclose(boxes[i], truth[i])
    assert small[2] < boxes[16][2] < large[2]  # in between: interpolated


def test_fast_finds_where_a_face_leaves_and_skips_faceless_spans():
    face = (100, 100, 200, 200)
    truth = {i: face if i < 20 else None for i in range(49)}
    boxes, calls = _track(truth, 49)
    assert all(boxes[i] is not None for i in range(20))
    assert all(boxes[i] is None for i in range(20, 49))
    assert {25, 30, 40}.isdisjoint(calls)  # between two faceless keyframes: no detection


def test_fast_closes_a_stream_that_ends_between_keyframes():
    truth = {i: (10 + 0.2 * i, 10, 60 + 0.2 * i, 60) for i in range(30)}
    boxes, calls = _track(truth, 30)
    assert calls == [0, 12, 24, 29]
    np.testing.assert_allclose(boxes[27], truth[27])


def test_exact_detects_every_frame():
    truth = {i: (10, 10, 60, 60) for i in range(5)}
    _, calls = _track(truth, 5, EXACT)
    assert calls == [0, 1, 2, 3, 4]


# --- real talking-head videos ---------------------------------------------------------------

SAMPLES_PER_VIDEO = 8


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


@pytest.fixture(scope="module")
def sampled(shared_data, detector):
    """8 evenly spaced frames of every talking-head video, with the reference boxes."""
    videos = {}
    for path in sorted((shared_data / "talking_heads").glob("*.mp4")):
        frames = list(read_frames(str(path), SAMPLES_PER_VIDEO))
        exact = [detector.detect_exact(frame) for _, frame in frames]
        videos[path.name] = (frames, exact)
    assert len(videos) >= 10
    return videos


def _crop_iou(face_a, face_b, frame) -> float:
    height, width = frame.shape[:2]
    return box_iou(crop_box(face_a, width, height), crop_box(face_b, width, height))


@pytest.mark.slow
def test_exact_finds_a_face_in_at_least_95_percent_of_frames(sampled):
    found = [box is not None for _, exact in sampled.values() for box in exact]
    assert np.mean(found) >= 0.95, f"faces in {np.mean(found):.1%} of sampled frames"
    # A 1280-pixel-tall video is among them.
    assert any(frames[0][1].shape[0] == 1280 for frames, _ in sampled.values())


@pytest.mark.slow
def test_fast_matches_exact_on_sampled_frames(sampled):
    ious = []
    fast = FaceDetector()  # one per process, as the stage does (building one takes ~0.4 s)
    for frames, exact in sampled.values():
        for (_, frame, box), ref in zip(track_faces(frames, fast, FAST), exact, strict=True):
            if box is not None and ref is not None:
                ious.append(_crop_iou(box, ref, frame))
    assert len(ious) >= 0.95 * SAMPLES_PER_VIDEO * len(sampled)
    assert np.mean(ious) >= 0.9, f"mean IoU {np.mean(ious):.3f}"


@pytest.mark.slow
def test_pyramid_restricted_detection_reproduces_the_reference(sampled, detector):
    # Starting the scan one level below the face's own level gives the reference box.
    ious = []
    for frames, exact in sampled.values():
        for (_, frame), ref in zip(frames[:3], exact[:3], strict=True):
            if ref is None:
                continue
            level = round(pyramid_level(ref[2] - ref[0])) - 1
            box = detector.detect_from_level(frame, level)
            ious.append(0.0 if box is None else box_iou(box, ref))
    assert np.mean(ious) >= 0.95 and np.min(ious) >= 0.8, ious


@pytest.mark.slow
@pytest.mark.parametrize("name", ["d9.mp4", "d20.mp4"])
def test_fast_matches_exact_on_consecutive_frames(shared_data, detector, name):
    frames = list(read_frames(str(shared_data / "talking_heads" / name), 0, max_frames=30))
    assert [i for i, _ in frames] == list(range(30))
    exact = [detector.detect_exact(frame) for _, frame in frames]
    calls = detector.calls
    tracked = list(track_faces(frames, detector, FAST))
    assert detector.calls - calls < len(frames) / 2  # most boxes come from interpolation
    ious = [
        _crop_iou(box, ref, frame)
        for (_, frame, box), ref in zip(tracked, exact, strict=True)
        if box is not None and ref is not None
    ]
    assert len(ious) >= 28
    assert np.mean(ious) >= 0.9, f"mean IoU {np.mean(ious):.3f}"
