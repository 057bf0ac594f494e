"""The face-crop adapter (`--dataset=crops`) on a fixed subset of the DFDC face crops.

The subset (a few reals and the fakes made from them, read from ../shared) is laid
out as the DFDC face dump is (faces_224/ with metadata.csv), with every kind of bad
input the adapter and the face stage must count and survive.
"""

from __future__ import annotations

import collections
import csv
import shutil

import cv2
import numpy as np
import pytest

from data_prep import face_records
from data_prep.datasets import CropsDataset, open_dataset
from data_prep.datasets.crops import DEFAULT_RATIOS, split_of
from data_prep.face_settings import GIVEN, FaceSettings
from data_prep.face_stage import prepare_faces
from data_prep.methods import ORIGINAL

REALS = 4  # real crops of the subset, each with every fake made from it


def _metadata_rows(shared_data) -> list[dict[str, str]]:
    with open(shared_data / "dfdc_faces" / "metadata.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def subset_rows(shared_data) -> list[dict[str, str]]:
    """The first REALS reals that have fakes, and those fakes."""
    rows = _metadata_rows(shared_data)
    fakes_of = collections.defaultdict(list)
    for row in rows:
        if row["label"] == "FAKE":
            fakes_of[row["original"]].append(row)
    reals = [r for r in rows if r["label"] == "REAL" and r["videoname"] in fakes_of][:REALS]
    return reals + [f for r in reals for f in fakes_of[r["videoname"]]]


COLUMNS = ["videoname", "original_width", "original_height", "label", "original"]


def _write_dump(root, shared_data, rows) -> None:
    """A face dump at `root`: faces_224/<name>.jpg and a metadata.csv row for `rows`."""
    (root / "faces_224").mkdir(parents=True)
    for row in rows:
        name = row["videoname"].replace(".mp4", ".jpg")
        shutil.copy(shared_data / "dfdc_faces" / "faces_224" / name, root / "faces_224" / name)
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in writer.fieldnames})


@pytest.fixture(scope="module")
def dump(tmp_path_factory, shared_data, subset_rows):
    """The subset with bad inputs: a truncated JPEG, bytes that are no image, an image
    smaller than the crops, a bad label, a row without file, a file without row, and a
    fake whose original is not in the set."""
    root = tmp_path_factory.mktemp("crops") / "dump"
    _write_dump(root, shared_data, subset_rows)
    faces = root / "faces_224"
    real = faces / subset_rows[0]["videoname"].replace(".mp4", ".jpg")
    data = real.read_bytes()
    (faces / "cutshort.jpg").write_bytes(data[:-300])  # decodes, grey at the bottom
    (faces / "notanimage.jpg").write_bytes(b"this is not a JPEG" * 10)
    cv2.imwrite(str(faces / "tiny.png"), np.full((40, 48, 3), 128, np.uint8))
    (faces / "nolabel.jpg").write_bytes(data)
    (faces / "unlisted.jpg").write_bytes(data)
    (faces / "orphan.jpg").write_bytes(data)
    extra = [
        {"videoname": "cutshort.mp4", "label": "REAL"},
        {"videoname": "notanimage.mp4", "label": "REAL"},
        {"videoname": "tiny.mp4", "label": "FAKE", "original": subset_rows[0]["videoname"]},
        {"videoname": "nolabel.mp4", "label": "MAYBE"},
        {"videoname": "gone.mp4", "label": "REAL"},
        {"videoname": "orphan.mp4", "label": "FAKE", "original": "notinthisset.mp4"},
    ]
    with open(root / "metadata.csv", "a", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        for row in extra:
            writer.writerow({k: row.get(k, "") for k in writer.fieldnames})
    return root


def test_face_dump_listing_counts_every_problem(dump, subset_rows):
    listing = open_dataset("crops", str(dump)).list_videos("raw", None)
    kinds = collections.Counter(p.kind for p in listing.problems)
    assert kinds == {"bad_label": 1, "missing_video": 1, "unlisted_file": 1, "missing_original": 1}
    assert listing.methods == ("fake",)
    by_id = {v.video: v for v in listing.videos}
    # The subset, plus the three broken images (listed: they fail in the face stage)
    # and the orphan fake (kept).
    assert len(by_id) == len(subset_rows) + 4
    assert by_id["orphan"].label == 1 and by_id["orphan"].split == split_of("orphan", 0)
    for row in subset_rows:
        video = by_id[row["videoname"][:-4]]
        assert video.label == (row["label"] == "FAKE")
        if row["label"] == "FAKE":  # a fake goes where its original goes
            assert video.split == by_id[row["original"][:-4]].split


def test_seeded_splits_follow_the_ratios_and_the_seed(shared_data):
    """On the whole metadata: no source crosses splits, the ratios hold per source."""
    rows = _metadata_rows(shared_data)
    listing = open_dataset("crops", str(shared_data / "dfdc_faces")).list_videos("raw", None)
    assert not listing.problems
    split = {v.video: v.split for v in listing.videos}
    originals = {r["videoname"][:-4]: r["original"][:-4] for r in rows if r["label"] == "FAKE"}
    assert all(split[fake] == split[real] for fake, real in originals.items())
    reals = [v for v in listing.videos if v.source == ORIGINAL]
    shares = collections.Counter(v.split for v in reals)
    for name, ratio in zip(("train", "val", "test"), DEFAULT_RATIOS, strict=True):
        assert abs(shares[name] / len(reals) - ratio) < 0.02
    reseeded = CropsDataset(str(shared_data / "dfdc_faces"), seed=1)
    moved = sum(v.split != split[v.video] for v in reseeded.list_videos("raw", None).videos)
    assert moved > len(rows) // 4  # another seed, another split
    assert f"seed 0, train {DEFAULT_RATIOS[0]:g}" in listing.split_policy


def test_face_stage_takes_crops_as_given_and_counts_bad_images(dump, tmp_path, subset_rows):
    listing_dataset = open_dataset("crops", str(dump))
    settings = FaceSettings(face_finder=GIVEN, methods=None)
    manifest = prepare_faces(listing_dataset, str(tmp_path / "faces"), settings, workers=1)
    assert manifest["failures"] == {
        "by_kind": {"too_small": 1, "truncated": 1, "unreadable": 1},
        "smallest_rejected": [40, 48],
    }
    assert manifest["found"]["videos"] == {
        ORIGINAL: REALS + 2,
        "fake": len(subset_rows) - REALS + 2,
    }
    assert "seed 0" in manifest["split_policy"]
    done = [e for e in manifest["videos"] if e["status"] == "ok"]
    assert len(done) == len(subset_rows) + 1  # the orphan fake too
    entry = done[0]
    shard = tmp_path / "faces" / entry["shard"]
    (example,) = [face_records.parse_face_numpy(r) for r in _records(shard)]
    source = cv2.imread(entry["path"])
    height, width = source.shape[:2]
    assert example.box == (0, 0, width, height)
    expected = cv2.cvtColor(
        cv2.resize(source, (64, 64), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB
    )
    np.testing.assert_array_equal(example.image, expected)
    # A re-run does nothing again and keeps the counts.
    again = prepare_faces(listing_dataset, str(tmp_path / "faces"), settings, workers=1)
    assert again["failures"] == manifest["failures"]
    assert again["totals"]["all"]["ok"] == manifest["totals"]["all"]["ok"]


def _records(path) -> list[bytes]:
    import tensorflow as tf

    return [r.numpy() for r in tf.data.TFRecordDataset(str(path))]


def test_folder_layouts_of_crops_get_seeded_splits(tmp_path, shared_data, subset_rows):
    root = tmp_path / "folders"
    for row in subset_rows:
        kind = "real" if row["label"] == "REAL" else "fake/methodA"
        (root / kind).mkdir(parents=True, exist_ok=True)
        name = row["videoname"].replace(".mp4", ".jpg")
        shutil.copy(shared_data / "dfdc_faces" / "faces_224" / name, root / kind / name)
    (root / "test" / "real").mkdir(parents=True)
    (root / "test" / "fake").mkdir(parents=True)
    shutil.copy(
        root / "real" / subset_rows[0]["videoname"].replace(".mp4", ".jpg"),
        root / "test" / "real" / "given.jpg",
    )
    listing = open_dataset("crops", str(root)).list_videos("raw", None)
    by_id = {(v.source, v.video): v for v in listing.videos}
    assert by_id[(ORIGINAL, "given")].split == "test"  # the layout's own split
    for (_, video), entry in by_id.items():
        if video != "given":
            assert entry.split == split_of(video, 0)
    assert listing.methods == ("methodA",)
