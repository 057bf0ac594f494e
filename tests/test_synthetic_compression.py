"""The generated dataset's compression levels: c23 and c40 written beside raw (JPEG
stand-ins for FF++'s H.264), read back exactly, listed by the adapter, and a missing
or stale level reported instead of read."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from data_prep.datasets import open_dataset
from data_prep.datasets.ffpp import COMPRESSIONS, masks_dir, videos_dir
from data_prep.datasets.generated import LEVEL_CODECS, MARKER, describe_level
from data_prep.methods import ORIGINAL
from data_prep.methods import PAPER_METHODS as METHODS
from data_prep.synthetic import generate_synthetic_ffpp, read_video
from data_prep.synthetic.compression import degrade_frame, psnr

SIZE = {"identities": 6, "frames": 3, "seed": 5, "width": 96, "height": 96}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("levels"))
    return out, generate_synthetic_ffpp(out, **SIZE)


def _names(folder: str) -> list[str]:
    return sorted(os.listdir(folder))


def test_every_video_is_written_at_every_level_and_decodes(dataset):
    out, summary = dataset
    assert summary["compressions"] == list(COMPRESSIONS)
    for source in (ORIGINAL, *METHODS):
        raw_names = _names(videos_dir(out, source, "raw"))
        assert len(raw_names) == SIZE["identities"]
        for level in ("c23", "c40"):
            assert _names(videos_dir(out, source, level)) == raw_names
        for name in raw_names[:2]:
            raw = read_video(os.path.join(videos_dir(out, source, "raw"), name))
            for level in ("c23", "c40"):
                path = os.path.join(videos_dir(out, source, level), name)
                frames = read_video(path)
                assert len(frames) == SIZE["frames"] and frames[0].shape == raw[0].shape
                # Stored losslessly: exactly the JPEG round trip of each raw frame, and
                # the same on every read.
                for stored, frame in zip(frames, raw, strict=True):
                    assert np.array_equal(stored, degrade_frame(frame, level))
                assert all(
                    np.array_equal(a, b) for a, b in zip(frames, read_video(path), strict=True)
                )
    # Masks keep their one folder per method, beside the levels (FF++ masks have none).
    for method in METHODS:
        assert _names(masks_dir(out, method)) == _names(videos_dir(out, method, "raw"))
        folder = os.path.join(out, "manipulated_sequences", method)
        assert _names(folder) == sorted(["raw", "c23", "c40", "masks"])


def test_levels_differ_from_raw_by_the_expected_amount(dataset):
    out, summary = dataset
    levels = summary["levels"]
    assert set(levels) == {"c23", "c40"}
    for level, codec in LEVEL_CODECS.items():
        assert {k: levels[level][k] for k in codec} == codec
    # Close to x264's PSNR to raw on the generated videos (about 35 dB at CRF 23 and
    # 28 dB at CRF 40, measured once when the qualities were chosen).
    assert 32.0 < levels["c23"]["psnr_db"] < 38.0
    assert 25.5 < levels["c40"]["psnr_db"] < 31.0
    assert levels["c23"]["psnr_db"] - levels["c40"]["psnr_db"] > 4.0
    name = _names(videos_dir(out, ORIGINAL, "raw"))[0]
    raw = read_video(os.path.join(videos_dir(out, ORIGINAL, "raw"), name))[0]
    c23, c40 = (
        read_video(os.path.join(videos_dir(out, ORIGINAL, level), name))[0]
        for level in ("c23", "c40")
    )
    assert not np.array_equal(c23, raw) and psnr(raw, c23) > psnr(raw, c40)
    with open(os.path.join(out, MARKER)) as f:
        assert json.load(f)["compressions"] == ["raw", "c23", "c40"]


def test_the_adapter_lists_each_level_with_the_same_videos_and_masks(dataset):
    out, summary = dataset
    generated = open_dataset("generated", out)
    assert generated.levels() == ["raw", "c23", "c40"]
    listings = {level: generated.list_videos(level, None) for level in COMPRESSIONS}
    raw = listings["raw"]
    for level, listing in listings.items():
        assert listing.compression == level and not listing.problems
        assert listing.counts() == summary["videos"]
        assert [(v.source, v.video, v.split, v.mask_path) for v in listing.videos] == [
            (v.source, v.video, v.split, v.mask_path) for v in raw.videos
        ]
        assert all(f"{os.sep}{level}{os.sep}videos{os.sep}" in v.path for v in listing.videos)
    with pytest.raises(ValueError, match="Unknown compression"):
        generated.list_videos("c99", None)
    assert "quality" in describe_level("c23") and "H.264 CRF 40" in describe_level("c40")


def test_a_missing_level_is_reported_then_added_with_the_raw_videos_kept(tmp_path):
    out = str(tmp_path / "raw_only")
    summary = generate_synthetic_ffpp(out, **SIZE, compressions=("raw",))
    assert summary["compressions"] == ["raw"] and summary["levels"] == {}
    assert not os.path.exists(videos_dir(out, ORIGINAL, "c23"))
    generated = open_dataset("generated", out)
    with pytest.raises(
        ValueError, match=r"holds raw only, not c40.*--config.synthetic.compressions=raw,c40"
    ):
        generated.list_videos("c40", None)
    raw_video = os.path.join(
        videos_dir(out, "Deepfakes", "raw"), _names(videos_dir(out, "Deepfakes", "raw"))[0]
    )
    mtime = os.path.getmtime(raw_video)
    again = generate_synthetic_ffpp(out, **SIZE, compressions=("raw", "c40"))
    assert again["compressions"] == ["raw", "c40"] and os.path.getmtime(raw_video) == mtime
    assert len(generated.list_videos("c40", None).videos) == 5 * SIZE["identities"]
    with pytest.raises(ValueError, match="holds raw, c40 only, not c23"):
        generated.list_videos("c23", None)
    # Asking for raw only afterwards keeps the levels already complete.
    kept = generate_synthetic_ffpp(out, **SIZE, compressions=("raw",))
    assert kept["compressions"] == ["raw", "c40"]


def test_a_dataset_generated_before_the_levels_holds_raw_only(dataset, tmp_path):
    out, _ = dataset
    old = str(tmp_path / "old")
    shutil.copytree(out, old)
    with open(os.path.join(old, MARKER)) as f:
        marker = json.load(f)
    for key in ("compressions", "levels"):
        del marker[key]
    with open(os.path.join(old, MARKER), "w") as f:
        json.dump(marker, f)
    generated = open_dataset("generated", old)
    assert generated.levels() == ["raw"]
    with pytest.raises(ValueError, match="holds raw only, not c23"):
        generated.list_videos("c23", None)
    assert generated.list_videos("raw", None).counts() == marker["videos"]


def test_levels_made_with_other_parameters_are_refused(dataset, tmp_path):
    out, _ = dataset
    stale = str(tmp_path / "stale")
    shutil.copytree(out, stale)
    with open(os.path.join(stale, MARKER)) as f:
        marker = json.load(f)
    marker["levels"]["c23"]["quality"] = 11
    with open(os.path.join(stale, MARKER), "w") as f:
        json.dump(marker, f)
    with pytest.raises(ValueError, match="made with"):
        open_dataset("generated", stale).list_videos("c23", None)
    with pytest.raises(ValueError, match="other parameters"):
        generate_synthetic_ffpp(stale, **SIZE)


def test_bad_level_requests(tmp_path):
    with pytest.raises(ValueError, match="must include raw"):
        generate_synthetic_ffpp(str(tmp_path / "a"), **SIZE, compressions=("c23",))
    with pytest.raises(ValueError, match="Unknown compression 'c99'"):
        generate_synthetic_ffpp(str(tmp_path / "b"), **SIZE, compressions=("raw", "c99"))
    with pytest.raises(ValueError, match="Unknown level"):
        degrade_frame(np.zeros((8, 8, 3), np.uint8), "c99")
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b")
