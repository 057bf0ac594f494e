"""FF++ layout discovery, official split assignment and frame sampling."""

from __future__ import annotations

import collections
import json
import pathlib

import pytest

from data_prep.config import METHODS, ORIGINAL
from data_prep.ffpp_layout import find_videos, videos_dir
from data_prep.frames import sample_frame_indices
from data_prep.splits import SplitFileError, load_splits, read_split_file

# --- official splits -------------------------------------------------------------------


def test_official_splits_assign_originals_720_140_140(shared_data):
    index = load_splits(str(shared_data / "ffpp_splits"))
    assert index.counts() == {"train": 360, "val": 70, "test": 70}
    ids = {i for pairs in index.pairs.values() for pair in pairs for i in pair}
    assert len(ids) == 1000
    counts = collections.Counter(index.split_of(i, ORIGINAL) for i in ids)
    assert counts == {"train": 720, "val": 140, "test": 140}


def test_official_splits_assign_both_fakes_of_a_pair(shared_data):
    index = load_splits(str(shared_data / "ffpp_splits"))
    for method in METHODS:
        counts = collections.Counter()
        for split, pairs in index.pairs.items():
            for a, b in pairs:
                # a_b and b_a both belong to the split that lists [a, b]...
                assert index.split_of(f"{a}_{b}", method) == split
                assert index.split_of(f"{b}_{a}", method) == split
                # ...and so do their originals: no identity crosses splits.
                assert index.split_of(a, ORIGINAL) == index.split_of(b, ORIGINAL) == split
                counts[split] += 2
        assert counts == {"train": 720, "val": 140, "test": 140}


def test_split_of_unlisted_or_malformed_names_is_none(shared_data):
    index = load_splits(str(shared_data / "ffpp_splits"))
    a, b = index.pairs["train"][0]
    c, _ = index.pairs["test"][0]
    assert index.split_of("9999", ORIGINAL) is None
    assert index.split_of(f"{a}_{c}", "Deepfakes") is None  # ids from two different pairs
    assert index.split_of(f"{a}_{b}_x", "Deepfakes") is None
    assert index.split_of(a, "Deepfakes") is None  # a fake name needs target_source


def _write_splits(folder: pathlib.Path, train, val, test) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, pairs in (("train", train), ("val", val), ("test", test)):
        (folder / f"{name}.json").write_text(json.dumps(pairs))
    return folder


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{not json", "does not parse"),
        ('{"a": 1}', "JSON list"),
        ('[["001", "002", "003"]]', "entry 0"),
        ('[["001", "001"]]', "two different"),
        ("[[1, 2]]", "id strings"),
    ],
)
def test_bad_split_file_is_a_clear_error(tmp_path, content, fragment):
    path = tmp_path / "train.json"
    path.write_text(content)
    with pytest.raises(SplitFileError, match=fragment) as err:
        read_split_file(str(path))
    assert str(path) in str(err.value)


def test_lenient_load_records_the_unusable_file(tmp_path):
    folder = _write_splits(tmp_path / "s", [["000", "001"]], [["002", "003"]], [["004", "005"]])
    (folder / "val.json").write_text("[[")
    with pytest.raises(SplitFileError, match="val.json"):
        load_splits(str(folder))
    index = load_splits(str(folder), strict=False)
    assert len(index.errors) == 1 and "val.json" in index.errors[0]
    assert index.split_of("000", ORIGINAL) == "train"
    assert index.split_of("002", ORIGINAL) is None  # val is unusable: in no split
    assert index.split_of("005_004", "FaceSwap") == "test"


def test_contradicting_or_missing_splits(tmp_path):
    folder = _write_splits(tmp_path / "c", [["000", "001"]], [["001", "002"]], [["003", "004"]])
    with pytest.raises(SplitFileError, match="001"):
        load_splits(str(folder))
    with pytest.raises(FileNotFoundError, match="splits_dir"):
        load_splits(str(tmp_path / "nowhere"))
    empty = _write_splits(tmp_path / "e", [], [], [])
    with pytest.raises(SplitFileError, match="no pairs"):
        load_splits(str(empty))


# --- layout ------------------------------------------------------------------------------


def _touch(folder: str, *names: str) -> None:
    path = pathlib.Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    for name in names:
        (path / name).write_bytes(b"x")


def test_find_videos_reads_the_official_layout(tmp_path):
    root = str(tmp_path)
    _touch(videos_dir(root, ORIGINAL, "c23"), "000.mp4", "001.avi", "002.mkv", ".hidden.mp4")
    _touch(videos_dir(root, ORIGINAL, "c23") + "/sub")  # a folder is not a video
    _touch(videos_dir(root, "Deepfakes", "c23"), "000_001.mp4", "001_000.mp4")
    _touch(videos_dir(root, "Face2Face", "c23"), "000_001.mp4", "000_001.avi")  # duplicate
    _touch(videos_dir(root, "FaceSwap", "raw"), "000_001.mp4")  # other compression only
    # Present in newer downloads, never read: masks, FaceShifter, DeepFakeDetection.
    _touch(str(tmp_path / "manipulated_sequences/Deepfakes/masks/videos"), "000_001.mp4")
    _touch(videos_dir(root, "FaceShifter", "c23"), "000_001.mp4")
    _touch(videos_dir(root, "DeepFakeDetection", "c23"), "01_02__walk__ABC.mp4")

    report = find_videos(root, "c23", METHODS)

    found = {(v.method, v.video, v.path.rsplit(".", 1)[1]) for v in report.videos}
    assert found == {
        (ORIGINAL, "000", "mp4"),
        (ORIGINAL, "001", "avi"),
        (ORIGINAL, "002", "mkv"),
        ("Deepfakes", "000_001", "mp4"),
        ("Deepfakes", "001_000", "mp4"),
        ("Face2Face", "000_001", "avi"),  # first of the duplicates by name
    }
    assert {v.label for v in report.videos if v.method == ORIGINAL} == {0}
    assert {v.label for v in report.videos if v.method != ORIGINAL} == {1}
    kinds = {(p.kind, p.method) for p in report.problems}
    assert kinds == {
        ("duplicate_video", "Face2Face"),
        ("missing_compression", "FaceSwap"),
        ("missing_method", "NeuralTextures"),
    }
    missing_level = next(p for p in report.problems if p.kind == "missing_compression")
    assert "found: raw" in missing_level.message and "--compression" in missing_level.message
    assert "manipulated_sequences/FaceShifter" in report.ignored
    assert "manipulated_sequences/DeepFakeDetection" in report.ignored
    assert report.counts() == {ORIGINAL: 3, "Deepfakes": 2, "Face2Face": 1}


def test_find_videos_originals_only_and_bad_requests(tmp_path):
    root = str(tmp_path)
    _touch(videos_dir(root, ORIGINAL, "raw"), "000.mp4")
    report = find_videos(root, "raw", ())
    assert [v.video for v in report.videos] == ["000"] and not report.problems
    with pytest.raises(ValueError, match="compression"):
        find_videos(root, "c90", ())
    with pytest.raises(ValueError, match="not one of the paper"):
        find_videos(root, "raw", ("FaceShifter",))
    with pytest.raises(ValueError, match="Unknown method"):
        find_videos(root, "raw", ("DeepFake",))
    with pytest.raises(FileNotFoundError, match="ffpp_root"):
        find_videos(str(tmp_path / "absent"), "raw", ())


def test_empty_videos_folder_is_reported(tmp_path):
    root = str(tmp_path)
    _touch(videos_dir(root, ORIGINAL, "raw"))
    report = find_videos(root, "raw", ())
    assert [p.kind for p in report.problems] == ["no_videos"]


# --- frame sampling ----------------------------------------------------------------------


def test_sample_frame_indices():
    assert sample_frame_indices(5, 0) == [0, 1, 2, 3, 4]
    assert sample_frame_indices(5, 9) == [0, 1, 2, 3, 4]
    assert sample_frame_indices(101, 5) == [0, 25, 50, 75, 100]
    assert sample_frame_indices(10, 1) == [5]
    picked = sample_frame_indices(300, 32)
    assert len(picked) == 32 and picked[0] == 0 and picked[-1] == 299
    gaps = {b - a for a, b in zip(picked, picked[1:], strict=False)}
    assert gaps <= {9, 10}  # evenly spaced
    assert sample_frame_indices(0, 4) == []
    with pytest.raises(ValueError):
        sample_frame_indices(10, -1)
