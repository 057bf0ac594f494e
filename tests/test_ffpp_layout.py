"""The FF++ adapter: layout discovery, official split assignment, masks; frame sampling."""

from __future__ import annotations

import collections
import json
import os
import pathlib

import pytest

from data_prep.datasets import FFPPDataset, open_dataset
from data_prep.datasets.ffpp import masks_dir, scan_layout, videos_dir
from data_prep.datasets.ffpp_splits import SplitFileError, load_splits, read_split_file
from data_prep.frames import sample_frame_indices
from data_prep.methods import ORIGINAL
from data_prep.methods import PAPER_METHODS as METHODS

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

    report = scan_layout(root, "c23", METHODS)

    found = {(v.source, v.video, v.path.rsplit(".", 1)[1]) for v in report.videos}
    assert found == {
        (ORIGINAL, "000", "mp4"),
        (ORIGINAL, "001", "avi"),
        (ORIGINAL, "002", "mkv"),
        ("Deepfakes", "000_001", "mp4"),
        ("Deepfakes", "001_000", "mp4"),
        ("Face2Face", "000_001", "avi"),  # first of the duplicates by name
    }
    assert {v.label for v in report.videos if v.source == ORIGINAL} == {0}
    assert {v.label for v in report.videos if v.source != ORIGINAL} == {1}
    kinds = {(p.kind, p.method) for p in report.problems}
    assert kinds == {
        ("duplicate_video", "Face2Face"),
        ("missing_compression", "FaceSwap"),
        ("missing_method", "NeuralTextures"),
    }
    missing_level = next(p for p in report.problems if p.kind == "missing_compression")
    assert "found: raw" in missing_level.message
    assert "--config.faces.compression" in missing_level.message
    assert "manipulated_sequences/FaceShifter" in report.ignored
    assert "manipulated_sequences/DeepFakeDetection" in report.ignored
    assert report.counts() == {ORIGINAL: 3, "Deepfakes": 2, "Face2Face": 1}


def test_find_videos_originals_only_and_bad_requests(tmp_path):
    root = str(tmp_path)
    _touch(videos_dir(root, ORIGINAL, "raw"), "000.mp4")
    report = scan_layout(root, "raw", ())
    assert [v.video for v in report.videos] == ["000"] and not report.problems
    with pytest.raises(ValueError, match="compression"):
        scan_layout(root, "c90", ())
    with pytest.raises(ValueError, match="not one of the paper"):
        scan_layout(root, "raw", ("FaceShifter",))
    with pytest.raises(ValueError, match="Unknown method"):
        scan_layout(root, "raw", ("DeepFake",))
    with pytest.raises(FileNotFoundError, match="ffpp_root"):
        scan_layout(str(tmp_path / "absent"), "raw", ())


def test_empty_videos_folder_is_reported(tmp_path):
    root = str(tmp_path)
    _touch(videos_dir(root, ORIGINAL, "raw"))
    report = scan_layout(root, "raw", ())
    assert [p.kind for p in report.problems] == ["no_videos"]


def test_faceshifter_and_deepfakedetection_are_listed_where_present_with_masks(tmp_path):
    root = str(tmp_path)
    _touch(videos_dir(root, ORIGINAL, "c23"), "000.mp4", "001.mp4")
    _touch(videos_dir(root, "Deepfakes", "c23"), "000_001.mp4", "001_000.mp4")
    _touch(videos_dir(root, "FaceShifter", "c23"), "000_001.mp4", "001_000.mp4")
    _touch(videos_dir(root, "DeepFakeDetection", "c23"), "01_02__walk__ABC.mp4")
    _touch(masks_dir(root, "Deepfakes"), "000_001.mp4")
    _touch(masks_dir(root, "FaceShifter"), "001_000.mp4")
    splits = _write_splits(tmp_path / "splits", [["000", "001"]], [], [])

    # Every method folder found, when none is requested: FF++'s order, masks beside.
    listing = FFPPDataset(root, str(splits)).list_videos("c23", None)
    assert listing.methods == ("Deepfakes", "FaceShifter", "DeepFakeDetection")
    assert not listing.ignored and not listing.problems
    entries = {(v.source, v.video): v for v in listing.videos}
    assert entries[("FaceShifter", "001_000")].mask_path == os.path.join(
        masks_dir(root, "FaceShifter"), "001_000.mp4"
    )
    assert entries[("Deepfakes", "000_001")].mask_path.endswith(
        "manipulated_sequences/Deepfakes/masks/videos/000_001.mp4"
    )
    assert entries[("Deepfakes", "001_000")].mask_path is None
    assert entries[(ORIGINAL, "000")].mask_path is None
    assert {v.split for v in listing.videos if v.source != "DeepFakeDetection"} == {"train"}
    assert {v.label for v in listing.videos} == {0, 1}
    # DeepFakeDetection's names are not youtube pairs: listed, in no split.
    assert [v.key for v in listing.unassigned()] == ["DeepFakeDetection/01_02__walk__ABC"]
    # Requested explicitly, they are accepted; the paper's four alone leave them ignored.
    only = open_dataset("ffpp", root, str(splits)).list_videos("c23", ["FaceShifter"])
    assert only.counts() == {ORIGINAL: 2, "FaceShifter": 2}
    assert only.ignored == [
        "manipulated_sequences/DeepFakeDetection",
        "manipulated_sequences/Deepfakes",
    ]
    paper = scan_layout(root, "c23", METHODS)
    assert "manipulated_sequences/FaceShifter" in paper.ignored
    assert {p.kind for p in paper.problems} == {"missing_method"}  # F2F, FS, NT
    # A masks folder is not a compression level.
    _touch(videos_dir(root, "FaceSwap", "raw"), "000_001.mp4")
    _touch(masks_dir(root, "FaceSwap"), "000_001.mp4")
    problem = next(p for p in scan_layout(root, "c23", ["FaceSwap"]).problems)
    assert problem.kind == "missing_compression" and "(found: raw)" in problem.message


def test_the_ffpp_adapter_requires_a_split_folder(tmp_path):
    with pytest.raises(ValueError, match="splits_dir"):
        FFPPDataset(str(tmp_path), None)
    with pytest.raises(ValueError, match="Unknown dataset"):
        open_dataset("nosuchdataset", str(tmp_path))


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
