"""The Celeb-DF, DFDC and generic-folder adapters on generated trees of each layout,
good and bad: what is found is listed, what is wrong is a named problem."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from conftest import PROJECT_ROOT

from data_prep.datasets import (
    ADAPTERS,
    CelebDFDataset,
    DFDCDataset,
    FolderDataset,
    open_dataset,
)
from data_prep.datasets.common import video_id
from data_prep.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, media_kind
from data_prep.methods import ORIGINAL, PAPER_METHODS


def _touch(root: pathlib.Path, *relative: str) -> None:
    """Empty files: the adapters only list paths, they never open them."""
    for path in relative:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(b"")


def _by_key(listing) -> dict[str, tuple[int, str | None]]:
    return {v.key: (v.label, v.split) for v in listing.videos}


def _kinds(listing) -> list[str]:
    return sorted(p.kind for p in listing.problems)


def test_registry_and_media_kinds():
    assert {"ffpp", "generated", "celebdf", "dfdc", "folder"} <= set(ADAPTERS)
    assert media_kind("a/B.MP4") == "video" and media_kind("x.jpeg") == "image"
    assert media_kind("notes.txt") is None
    assert not set(VIDEO_EXTENSIONS) & set(IMAGE_EXTENSIONS)
    assert video_id("sub/dir/x.mp4") == "sub__dir__x" and video_id("../a.png") == "a"
    for name in ("celebdf", "dfdc", "folder"):
        with pytest.raises(ValueError, match="does not apply"):
            open_dataset(name, "/nowhere", splits_dir="splits")
        with pytest.raises(FileNotFoundError, match="--dataset_root"):
            open_dataset(name, "/nowhere/at/all").list_videos("raw", None)


# Celeb-DF v2 -----------------------------------------------------------------------


def _celebdf(root: pathlib.Path, test_list: str | None) -> None:
    _touch(
        root,
        "Celeb-real/id0_0000.mp4",
        "Celeb-real/id0_0001.mp4",
        "YouTube-real/00000.mp4",
        "Celeb-synthesis/id0_id1_0000.mp4",
        "Celeb-synthesis/id0_id1_0001.mp4",
        "Celeb-synthesis/readme.txt",
    )
    if test_list is not None:
        (root / "List_of_testing_videos.txt").write_text(test_list)


def test_celebdf_lists_the_test_list_as_test_and_the_rest_unassigned(tmp_path):
    # Celeb-DF's convention: 1 real, 0 fake.
    _celebdf(
        tmp_path,
        "1 Celeb-real/id0_0000.mp4\n1 YouTube-real/00000.mp4\n0 Celeb-synthesis/id0_id1_0000.mp4\n",
    )
    listing = CelebDFDataset(str(tmp_path)).list_videos("raw", PAPER_METHODS)
    assert listing.problems == []
    assert listing.methods == ("CelebDF",)  # the config's FF++ methods do not apply
    assert _by_key(listing) == {
        "original/id0_0000": (0, "test"),
        "original/id0_0001": (0, None),
        "original/00000": (0, "test"),
        "CelebDF/id0_id1_0000": (1, "test"),
        "CelebDF/id0_id1_0001": (1, None),
    }
    assert listing.ignored == [os.path.join("Celeb-synthesis", "readme.txt")]
    assert "test" in listing.split_policy and "no split" in listing.split_policy
    every = CelebDFDataset(str(tmp_path), unlisted_split="train").list_videos("raw", None)
    assert {v.split for v in every.videos} == {"test", "train"}
    reals = CelebDFDataset(str(tmp_path)).list_videos("raw", ())
    assert {v.source for v in reals.videos} == {ORIGINAL} and reals.problems == []
    assert reals.ignored == ["Celeb-synthesis"]
    with pytest.raises(ValueError, match="holds no method 'Nope'.*CelebDF"):
        CelebDFDataset(str(tmp_path)).list_videos("raw", ["Nope"])


def test_celebdf_reports_disagreements_missing_files_and_folders(tmp_path):
    _celebdf(
        tmp_path,
        "0 Celeb-real/id0_0000.mp4\n1 Celeb-real/gone.mp4\nnot a line at all\n"
        "2 Celeb-real/id0_0001.mp4\n",
    )
    (tmp_path / "YouTube-real" / "00000.mp4").unlink()
    (tmp_path / "YouTube-real").rmdir()
    listing = CelebDFDataset(str(tmp_path)).list_videos("raw", None)
    assert _kinds(listing) == [
        "label_mismatch",
        "missing_folder",
        "missing_video",
        "split_file",
        "split_file",
    ]
    messages = " ".join(p.message for p in listing.problems)
    assert "labels Celeb-real/id0_0000.mp4 fake" in messages and "folder's label" in messages
    assert "line 3" in messages and "line 4" in messages and "YouTube-real" in messages
    # The mismatched video keeps the folder's label and is still a test video.
    assert _by_key(listing)["original/id0_0000"] == (0, "test")
    assert len(listing.videos) == 4
    none = tmp_path / "nolist"
    _celebdf(none, None)
    listing = CelebDFDataset(str(none)).list_videos("raw", None)
    assert _kinds(listing) == ["split_file"] and "No test list" in listing.problems[0].message
    assert len(listing.unassigned()) == 5


# DFDC ------------------------------------------------------------------------------


def _dfdc_part(folder: pathlib.Path, metadata, files: tuple[str, ...]) -> None:
    _touch(folder, *files)
    (folder / "metadata.json").write_text(
        metadata if isinstance(metadata, str) else json.dumps(metadata)
    )


def test_dfdc_lists_every_part_with_its_labels_and_splits(tmp_path):
    _dfdc_part(
        tmp_path / "dfdc_train_part_0",
        {
            "aaa.mp4": {"label": "REAL", "split": "train"},
            "bbb.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
        },
        ("aaa.mp4", "bbb.mp4", "stray.mp4"),
    )
    _dfdc_part(tmp_path / "more" / "part_1", {"ccc.mp4": {"label": "fake"}}, ("ccc.mp4",))
    listing = DFDCDataset(str(tmp_path)).list_videos("raw", None)
    assert listing.problems == [] and listing.methods == ("DFDC",)
    assert _by_key(listing) == {
        "original/aaa": (0, "train"),
        "DFDC/bbb": (1, "train"),
        "DFDC/ccc": (1, "test"),  # no split field: test
    }
    assert listing.ignored == [os.path.join("dfdc_train_part_0", "stray.mp4")]
    assert "else test" in listing.split_policy


def test_dfdc_reports_bad_metadata_labels_and_missing_videos(tmp_path):
    _dfdc_part(tmp_path / "broken", '{"aaa.mp4": {"label": ', ("aaa.mp4",))
    _dfdc_part(
        tmp_path / "good",
        {
            "ok.mp4": {"label": "REAL"},
            "odd.mp4": {"label": "MAYBE"},
            "gone.mp4": {"label": "FAKE"},
            "where.mp4": {"label": "FAKE", "split": "holdout"},
        },
        ("ok.mp4", "odd.mp4", "where.mp4"),
    )
    listing = DFDCDataset(str(tmp_path)).list_videos("raw", None)
    assert _kinds(listing) == ["bad_label", "bad_split", "metadata_file", "missing_video"]
    by_kind = {p.kind: p for p in listing.problems}
    assert by_kind["metadata_file"].path == str(tmp_path / "broken" / "metadata.json")
    assert "skipped" in by_kind["metadata_file"].message
    assert "odd.mp4" in by_kind["bad_label"].message and "'MAYBE'" in by_kind["bad_label"].message
    assert "gone.mp4" in by_kind["missing_video"].message
    assert _by_key(listing) == {"original/ok": (0, "test"), "DFDC/where": (1, None)}
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    assert _kinds(DFDCDataset(str(nothing)).list_videos("raw", None)) == ["no_videos"]


# Generic folder --------------------------------------------------------------------


def test_folder_layout_without_splits_is_all_test(tmp_path):
    _touch(
        tmp_path,
        "real/a.mp4",
        "real/sub/b.png",
        "fake/c.avi",
        "fake/notes.txt",
        "fake/.partial.mp4",
    )
    listing = FolderDataset(str(tmp_path)).list_videos("raw", PAPER_METHODS)
    assert listing.problems == [] and listing.methods == ("fake",)
    assert _by_key(listing) == {
        "original/a": (0, "test"),
        "original/sub__b": (0, "test"),
        "fake/c": (1, "test"),
    }
    assert listing.ignored == [os.path.join("fake", "notes.txt")]
    assert "test" in listing.split_policy


def test_folder_layout_with_splits_and_method_folders(tmp_path):
    _touch(
        tmp_path,
        "train/real/a.mp4",
        "train/fake/Deepfakes/a_b.mp4",
        "test/real/c.jpg",
        "test/fake/Other/d.mp4",
        "test/fake/e.mp4",
        "val/real/f.mp4",  # val/fake is missing
    )
    listing = FolderDataset(str(tmp_path)).list_videos("raw", None)
    assert listing.methods == ("Deepfakes", "Other", "fake")
    assert _by_key(listing) == {
        "original/a": (0, "train"),
        "Deepfakes/a_b": (1, "train"),
        "original/c": (0, "test"),
        "Other/d": (1, "test"),
        "fake/e": (1, "test"),
        "original/f": (0, "val"),
    }
    assert _kinds(listing) == ["missing_folder"]
    assert str(tmp_path / "val" / "fake") in listing.problems[0].message
    only = FolderDataset(str(tmp_path)).list_videos("raw", ["Deepfakes"])
    assert {v.source for v in only.videos} == {ORIGINAL, "Deepfakes"}


def test_folder_without_its_folders_and_duplicates(tmp_path):
    (tmp_path / "empty").mkdir()
    listing = FolderDataset(str(tmp_path / "empty")).list_videos("raw", None)
    assert _kinds(listing) == ["missing_folder"] and listing.videos == []
    assert "neither real/ and fake/" in listing.problems[0].message
    _touch(tmp_path / "dup", "real/a.mp4", "real/a.png", "fake/b.mp4")
    listing = FolderDataset(str(tmp_path / "dup")).list_videos("raw", None)
    assert _kinds(listing) == ["duplicate_video"] and len(listing.videos) == 2


def test_folder_csv(tmp_path):
    _touch(tmp_path, "clips/a.mp4", "clips/b.png", "clips/c.mp4", "clips/d.mp4", "doc.txt")
    (tmp_path / "list.csv").write_text(
        "path,label,split\n"
        "clips/a.mp4,real,train\n"
        "clips/b.png,1,\n"
        "clips/c.mp4,0,test\n"
        "clips/d.mp4,unsure,test\n"
        "clips/gone.mp4,fake,test\n"
        "clips/c.mp4,fake,later\n"
        "doc.txt,real,\n"
        "\n"
    )
    listing = FolderDataset(str(tmp_path / "list.csv")).list_videos("raw", None)
    assert _by_key(listing) == {
        "original/clips__a": (0, "train"),
        "fake/clips__b": (1, "test"),
        "original/clips__c": (0, "test"),
        "fake/clips__c": (1, None),
    }
    assert _kinds(listing) == ["bad_label", "bad_split", "missing_video"]
    assert listing.ignored == ["doc.txt"]
    assert "line 5" in next(p.message for p in listing.problems if p.kind == "bad_label")
    (tmp_path / "bad.csv").write_text("file,class\nclips/a.mp4,real\n")
    listing = FolderDataset(str(tmp_path / "bad.csv")).list_videos("raw", None)
    assert _kinds(listing) == ["metadata_file"] and "path,label" in listing.problems[0].message


# End to end ------------------------------------------------------------------------


def _face_video(path: pathlib.Path, person: int, frames: int = 3) -> None:
    from data_prep.synthetic import write_video
    from data_prep.synthetic.rendering import frame_state, make_identity, render_face

    identity = make_identity(7, person, 192, 160)
    images = [
        np.clip(render_face(identity, frame_state(identity, t, 192, 160)), 0, 255).astype(np.uint8)
        for t in range(frames)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(str(path), images, fps=25)


@pytest.mark.slow
def test_prepare_faces_on_a_generic_folder(tmp_path):
    root = tmp_path / "data"
    for i, name in enumerate(("real/r0.avi", "real/r1.avi", "fake/f0.avi", "fake/f1.avi")):
        _face_video(root / name, i)
    (root / "fake" / "README.md").write_text("not a video")
    workdir = tmp_path / "work"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.prepare_faces",
            "--config=smoke",
            f"--workdir={workdir}",
            "--dataset=folder",
            f"--dataset_root={root}",
            "--workers=1",
        ],
        cwd=PROJECT_ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((workdir / "faces" / "manifest.json").read_text())
    videos = {(v["method"], v["video"], v["split"], v["status"]) for v in manifest["videos"]}
    assert videos == {
        ("original", "r0", "test", "ok"),
        ("original", "r1", "test", "ok"),
        ("fake", "f0", "test", "ok"),
        ("fake", "f1", "test", "ok"),
    }
    assert all(v["faces"] > 0 for v in manifest["videos"])
    assert manifest["problems"] == []
