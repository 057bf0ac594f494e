"""The generated FF++-layout dataset: layout, splits, losslessness, faces, manipulations."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from data_prep.datasets import GeneratedDataset, open_dataset
from data_prep.datasets.ffpp import masks_dir, scan_layout, videos_dir
from data_prep.datasets.ffpp_splits import load_splits, read_split_file
from data_prep.face_detection import FaceDetector
from data_prep.methods import ORIGINAL
from data_prep.methods import PAPER_METHODS as METHODS
from data_prep.synthetic import generate_synthetic_ffpp, write_video
from data_prep.synthetic.assembly import pair_identities
from data_prep.synthetic.rendering import frame_state, make_identity, render_face

IDENTITIES, FRAMES, SEED = 6, 6, 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synthetic_ffpp"))
    return out, generate_synthetic_ffpp(out, identities=IDENTITIES, frames=FRAMES, seed=SEED)


def _read(path: str) -> list[np.ndarray]:
    capture = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def test_pairs_and_split_sizes():
    splits = pair_identities(12, seed=0)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [4, 1, 1]
    ids = [i for pairs in splits.values() for pair in pairs for i in pair]
    assert sorted(ids) == [f"{i:03d}" for i in range(12)]  # each identity in one pair
    big = pair_identities(100, seed=0)
    assert [len(big[s]) for s in ("train", "val", "test")] == [36, 7, 7]  # 72/14/14 %
    assert pair_identities(12, seed=1) != splits
    for bad in (4, 7):
        with pytest.raises(ValueError, match="even and at least 6"):
            pair_identities(bad, seed=0)


def test_layout_and_split_files(dataset):
    out, summary = dataset
    report = scan_layout(out, "raw", METHODS)
    assert not report.problems
    assert report.counts() == {ORIGINAL: IDENTITIES, **{m: IDENTITIES for m in METHODS}}
    pairs = {s: read_split_file(os.path.join(out, "splits", f"{s}.json")) for s in summary["pairs"]}
    assert {s: len(p) for s, p in pairs.items()} == {"train": 1, "val": 1, "test": 1}
    index = load_splits(os.path.join(out, "splits"))
    names = {(v.source, v.video) for v in report.videos}
    for split, split_pairs in pairs.items():
        for a, b in split_pairs:
            for method in METHODS:  # both fakes of every pair, in the pair's split
                assert {(method, f"{a}_{b}"), (method, f"{b}_{a}")} <= names
                assert index.split_of(f"{b}_{a}", method) == split
            assert index.split_of(a, ORIGINAL) == split
    with open(os.path.join(out, "synthetic.json")) as f:
        assert json.load(f)["videos"] == summary["videos"]
    for method in METHODS:  # and a mask for every fake, in the FF++ layout
        names = sorted(os.listdir(masks_dir(out, method)))
        assert names == sorted(f"{v.video}.avi" for v in report.videos if v.source == method)


@pytest.mark.parametrize("container", ["avi", "mkv"])
def test_videos_are_lossless(tmp_path, container, rng):
    frames = [rng.integers(0, 256, (100, 120, 3), dtype=np.uint8) for _ in range(4)]
    path = str(tmp_path / f"v.{container}")
    write_video(path, frames, fps=25)
    back = _read(path)
    assert len(back) == 4 and all(np.array_equal(a, b) for a, b in zip(frames, back, strict=True))
    assert os.listdir(tmp_path) == [f"v.{container}"]  # no temporary file left


@pytest.mark.slow
def test_dlib_finds_the_faces_in_nearly_every_frame(dataset):
    out, _ = dataset
    detector = FaceDetector()
    for method in (ORIGINAL, *METHODS):
        folder = videos_dir(out, method, "raw")
        found = [
            detector.detect_exact(frame) is not None
            for name in sorted(os.listdir(folder))
            for frame in _read(os.path.join(folder, name))
        ]
        assert len(found) == IDENTITIES * FRAMES
        assert np.mean(found) >= 0.95, f"{method}: faces in {np.mean(found):.0%} of frames"


def test_fakes_differ_from_the_original_in_the_face_region_only(dataset):
    out, summary = dataset
    a, b = summary["pairs"]["train"][0]
    original = _read(os.path.join(videos_dir(out, ORIGINAL, "raw"), f"{a}.avi"))
    detector = FaceDetector()
    x0, y0, x1, y1 = (int(v) for v in detector.detect_exact(original[0]))
    side = x1 - x0
    height, width = original[0].shape[:2]
    ys, xs = np.mgrid[0:height, 0:width]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    inner = (abs(xs - cx) < 0.3 * side) & (abs(ys - cy) < 0.35 * side)
    mouth = (abs(xs - cx) < 0.2 * side) & (ys > cy + 0.1 * side) & (ys < cy + 0.35 * side)
    far = (abs(xs - cx) > 1.1 * side) | (abs(ys - cy) > 1.1 * side)
    assert far.sum() > 1000
    fakes = {}
    for method in METHODS:
        fake = _read(os.path.join(videos_dir(out, method, "raw"), f"{a}_{b}.avi"))
        diff = np.abs(np.stack(fake).astype(float) - np.stack(original)).mean(-1)
        assert diff[:, mouth].mean() > 3.0, method  # every method changes the mouth region
        if method in ("Deepfakes", "FaceSwap"):
            assert diff[:, inner].mean() > 3.0, method  # these replace the inner face
        assert diff[:, far].mean() < 0.2, method  # the rest of the frame was not
        fakes[method] = np.stack(fake).astype(float)
    for i, m1 in enumerate(METHODS):  # four different manipulations
        for m2 in METHODS[i + 1 :]:
            assert np.abs(fakes[m1] - fakes[m2])[:, mouth].mean() > 2.0, (m1, m2)


def test_identities_differ_and_rendering_is_deterministic():
    people = [make_identity(0, i, 192, 160) for i in range(6)]
    assert len({tuple(np.round(p.skin)) for p in people}) == 6
    assert len({round(p.face_width, 3) for p in people}) == 6
    state = frame_state(people[0], 5, 192, 160)
    assert np.array_equal(render_face(people[0], state), render_face(people[0], state))
    again = make_identity(0, 0, 192, 160)
    assert np.array_equal(render_face(again, state), render_face(people[0], state))
    assert not np.array_equal(
        render_face(make_identity(1, 0, 192, 160), state), render_face(people[0], state)
    )
    # Faces move, blink and talk over time.
    states = [frame_state(people[0], t, 192, 160) for t in range(40)]
    assert np.ptp([s.cx for s in states]) > 3 and np.ptp([s.mouth_open for s in states]) > 0.5
    assert max(s.blink for s in states) == 1.0 and min(s.blink for s in states) == 0.0


def test_rerun_keeps_videos_and_refuses_other_settings(dataset):
    out, summary = dataset
    path = os.path.join(videos_dir(out, ORIGINAL, "raw"), "000.avi")
    mtime = os.path.getmtime(path)
    again = generate_synthetic_ffpp(out, identities=IDENTITIES, frames=FRAMES, seed=SEED)
    assert again["pairs"] == summary["pairs"] and os.path.getmtime(path) == mtime
    with pytest.raises(ValueError, match="other settings"):
        generate_synthetic_ffpp(out, identities=IDENTITIES, frames=FRAMES, seed=SEED + 1)


def test_a_dataset_without_masks_gains_them_and_keeps_its_videos(dataset, tmp_path):
    out, _ = dataset
    copy = str(tmp_path / "copy")
    shutil.copytree(out, copy)
    shutil.rmtree(os.path.join(copy, "manipulated_sequences", "FaceSwap", "masks"))
    video = os.path.join(
        videos_dir(copy, "FaceSwap", "raw"),
        sorted(os.listdir(videos_dir(copy, "FaceSwap", "raw")))[0],
    )
    mtime = os.path.getmtime(video)
    generate_synthetic_ffpp(copy, identities=IDENTITIES, frames=FRAMES, seed=SEED)
    assert os.path.getmtime(video) == mtime
    for name in os.listdir(masks_dir(out, "FaceSwap")):
        with (
            open(
                os.path.join(out, "manipulated_sequences", "FaceSwap", "masks", "videos", name),
                "rb",
            ) as a,
            open(os.path.join(masks_dir(copy, "FaceSwap"), name), "rb") as b,
        ):
            assert a.read() == b.read()  # the same masks as written with the videos


def test_the_generated_adapter_lists_the_dataset_with_its_own_splits(dataset, tmp_path):
    out, summary = dataset
    generated = open_dataset("generated", out)
    assert generated.splits_dir == os.path.join(out, "splits")
    listing = generated.list_videos("raw", None)
    assert listing.methods == METHODS and not listing.problems and not listing.unassigned()
    assert listing.counts() == summary["videos"]
    a, b = summary["pairs"]["test"][0]
    splits = {(v.source, v.video): v.split for v in listing.videos}
    assert splits[(ORIGINAL, a)] == splits[("FaceSwap", f"{b}_{a}")] == "test"
    # Every fake lists its mask (originals none), through the FF++ layout code.
    for v in listing.videos:
        if v.source == ORIGINAL:
            assert v.mask_path is None
        else:
            assert v.mask_path == os.path.join(masks_dir(out, v.source), f"{v.video}.avi")
    with pytest.raises(ValueError, match="own split files"):
        GeneratedDataset(out, splits_dir=out)
    # A folder without the marker (an interrupted run) is not a generated dataset.
    with pytest.raises(FileNotFoundError, match="make_synthetic_ffpp"):
        GeneratedDataset(str(tmp_path)).list_videos("raw", None)


def test_binary_refuses_an_odd_number_of_identities(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.make_synthetic_ffpp",
            f"--workdir={tmp_path}",
            f"--out={tmp_path}",
            "--config.synthetic.identities=7",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "even and at least 6" in result.stderr
