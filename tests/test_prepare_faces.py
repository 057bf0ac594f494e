"""The face-crop stage end to end: shards, manifest, schema, bad inputs, kill and resume."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from data_prep.datasets import FFPPDataset, GeneratedDataset
from data_prep.datasets.ffpp import videos_dir
from data_prep.face_journal import PROGRESS
from data_prep.face_records import FaceExample, parse_face, parse_face_numpy, serialize_face
from data_prep.face_settings import FaceSettings
from data_prep.face_stage import prepare_faces
from data_prep.methods import ORIGINAL
from data_prep.methods import PAPER_METHODS as METHODS
from data_prep.synthetic import generate_synthetic_ffpp, write_video
from experiments.pipeline import devices

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
IDENTITIES, FRAMES = 6, 10
WIDTH, HEIGHT = 192, 160


@pytest.fixture(scope="module")
def ffpp(tmp_path_factory):
    """A generated FF++-layout dataset: 6 identities, 30 videos of 10 frames."""
    root = str(tmp_path_factory.mktemp("ffpp"))
    generate_synthetic_ffpp(root, identities=IDENTITIES, frames=FRAMES, seed=5)
    return root


@pytest.fixture(scope="module")
def prepared(ffpp, tmp_path_factory):
    """prepare_faces on every frame of every video, two worker processes."""
    out = str(tmp_path_factory.mktemp("work") / "faces")
    manifest = prepare_faces(GeneratedDataset(ffpp), out, FaceSettings(), workers=2)
    return out, manifest


def _ffpp(root: str) -> FFPPDataset:
    """The generated dataset read as FF++, with its split folder."""
    return FFPPDataset(root, os.path.join(root, "splits"))


def _binary(
    *args: str, timeout: float = 240, name: str = "prepare_faces", default_logs: bool = False
) -> subprocess.CompletedProcess:
    """Runs a binary with TensorFlow's warnings muted, or with `default_logs` as a user
    would (TF_CPP_MIN_LOG_LEVEL unset: the binary chooses)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if default_logs:
        del env["TF_CPP_MIN_LOG_LEVEL"]
    return subprocess.run(
        [sys.executable, "-m", f"experiments.{name}", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _records(faces_dir: str) -> dict[tuple, bytes]:
    """Every example under a faces folder, keyed by (split, method, video, frame)."""
    records = {}
    for path in sorted(glob.glob(os.path.join(faces_dir, "*", "*", "*.tfrecord"))):
        for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
            e = parse_face_numpy(raw)
            key = (e.split, e.method, e.video, e.frame)
            assert key not in records, f"duplicate example {key}"
            records[key] = raw
    return records


# --- the schema ---------------------------------------------------------------------------


def test_schema_round_trip(rng):
    example = FaceExample(
        image=rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
        video="519_515",
        frame=42,
        method="Face2Face",
        label=1,
        split="test",
        compression="c23",
        box=(10, 20, 110, 120),
    )
    back = parse_face_numpy(serialize_face(example))
    assert np.array_equal(back.image, example.image)
    for field in ("video", "frame", "method", "label", "split", "compression", "box"):
        assert getattr(back, field) == getattr(example, field), field
    assert back.mask is None
    mask = np.where(rng.random((64, 64)) < 0.3, 255, 0).astype(np.uint8)
    masked = parse_face_numpy(serialize_face(dataclasses.replace(example, mask=mask)))
    assert np.array_equal(masked.mask, mask) and np.array_equal(masked.image, example.image)


# --- a full run -----------------------------------------------------------------------------


@pytest.mark.slow
def test_shards_hold_every_frame_with_its_metadata(ffpp, prepared):
    out, manifest = prepared
    assert manifest["complete"] and manifest["failed_videos"] == 0 and not manifest["problems"]
    assert len(manifest["videos"]) == IDENTITIES * (1 + len(METHODS))
    records = _records(out)
    for entry in manifest["videos"]:
        assert entry["status"] == "ok" and entry["error"] is None and entry["seconds"] > 0
        assert entry["frames_read"] == entry["frames_declared"] == entry["frames_decoded"] == FRAMES
        assert entry["faces"] + entry["frames_without_face"] == FRAMES
        assert entry["faces"] >= FRAMES - 1  # dlib finds the generated faces
        source = ORIGINAL if entry["method"] == ORIGINAL else entry["method"]
        shard = os.path.join(entry["split"], source, entry["video"] + ".tfrecord")
        assert entry["shard"] == shard and os.path.exists(os.path.join(out, shard))
        mine = [k for k in records if k[1:3] == (entry["method"], entry["video"])]
        assert len(mine) == entry["faces"] and {k[0] for k in mine} == {entry["split"]}
        if entry["method"] == ORIGINAL:  # originals have no mask
            assert "frames_with_mask" not in entry
        else:  # every generated fake has its mask video, with a mask for every frame
            assert entry["mask_path"] and entry["mask_error"] is None
            assert entry["frames_with_mask"] == entry["faces"] and not entry["frames_without_mask"]
    for raw in records.values():
        e = parse_face_numpy(raw)
        assert e.image.shape == (64, 64, 3)
        assert e.label == (0 if e.method == ORIGINAL else 1)
        assert e.compression == "raw" and 0 <= e.frame < FRAMES
        x0, y0, x1, y1 = e.box
        assert x1 - x0 == y1 - y0 > 40
        assert 0 <= x0 < x1 <= WIDTH and 0 <= y0 < y1 <= HEIGHT
        if e.method == ORIGINAL:
            assert e.mask is None
        else:
            assert e.mask.shape == (64, 64) and set(np.unique(e.mask)) <= {0, 255}
            assert np.any(e.mask)
    totals = manifest["totals"]
    assert totals["all"]["faces"] == len(records)
    assert sum(t["videos"] for t in totals["by_split"].values()) == len(manifest["videos"])
    assert totals["by_method"][ORIGINAL]["videos"] == IDENTITIES
    assert totals["by_split_method"]["train"]["Deepfakes"]["videos"] == 2
    with open(os.path.join(out, "manifest.json")) as f:
        assert json.load(f)["totals"] == totals


@pytest.mark.slow
def test_eager_and_tf_data_parsing_agree(prepared):
    out, _ = prepared
    shard = sorted(glob.glob(os.path.join(out, "train", "FaceSwap", "*.tfrecord")))[0]
    raws = list(tf.data.TFRecordDataset(shard).as_numpy_iterator())
    parsed = list(tf.data.TFRecordDataset(shard).map(parse_face).as_numpy_iterator())
    assert len(parsed) == len(raws) > 0
    for raw, p in zip(raws, parsed, strict=True):
        e = parse_face_numpy(raw)
        assert np.array_equal(p["image"], e.image)
        assert p["video"].decode() == e.video and p["method"].decode() == e.method
        assert p["split"].decode() == e.split and p["compression"].decode() == e.compression
        assert int(p["frame"]) == e.frame and int(p["label"]) == e.label
        assert tuple(int(v) for v in p["box"]) == e.box
        assert bool(p["has_mask"]) and np.array_equal(p["mask"], e.mask)


@pytest.mark.slow
def test_a_rerun_skips_finished_videos_and_refuses_other_settings(ffpp, prepared):
    out, manifest = prepared
    progress = pathlib.Path(out, PROGRESS)
    lines = progress.read_text().count("\n")
    shard = os.path.join(out, manifest["videos"][0]["shard"])
    mtime = os.path.getmtime(shard)
    again = prepare_faces(_ffpp(ffpp), out, FaceSettings(), workers=2)
    assert progress.read_text().count("\n") == lines  # nothing redone
    assert os.path.getmtime(shard) == mtime
    assert again["videos"] == manifest["videos"]
    with pytest.raises(ValueError, match="frames_per_video"):
        prepare_faces(_ffpp(ffpp), out, FaceSettings(frames_per_video=3))


@pytest.mark.slow
def test_originals_only_with_evenly_spaced_frames(ffpp, tmp_path):
    manifest = prepare_faces(
        _ffpp(ffpp), str(tmp_path / "faces"), FaceSettings(methods=(), frames_per_video=3)
    )
    assert {e["method"] for e in manifest["videos"]} == {ORIGINAL}
    frames = {k[3] for k in _records(str(tmp_path / "faces"))}
    assert frames <= {0, 4, 5, 9} and {0, 9} <= frames


def test_no_split_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="splits_dir"):
        prepare_faces(FFPPDataset(str(tmp_path), None), str(tmp_path / "faces"), FaceSettings())
    result = _binary("--dataset=ffpp", f"--dataset_root={tmp_path}", f"--workdir={tmp_path}")
    assert result.returncode != 0 and "--splits_dir is required" in result.stderr


@pytest.mark.slow
def test_unwritable_workdir_is_refused(ffpp, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match="writable"):
        prepare_faces(_ffpp(ffpp), str(blocker / "faces"), FaceSettings())
    result = _binary("--dataset=generated", f"--dataset_root={ffpp}", f"--workdir={blocker}")
    assert result.returncode != 0 and "writable" in result.stderr


@pytest.mark.slow
def test_make_reproduce_commands_generate_then_crop_the_generated_dataset(tmp_path):
    work = str(tmp_path / "work")
    synth = ["--config=smoke", f"--workdir={work}", "--config.synthetic.identities=6"]
    synth += ["--config.synthetic.frames=3"]
    made = _binary(*synth, name="make_synthetic_ffpp")
    assert made.returncode == 0, made.stderr[-2000:]
    marker = os.path.join(work, "synthetic_ffpp", "synthetic.json")
    mtime = os.path.getmtime(marker)
    again = _binary(*synth, name="make_synthetic_ffpp")  # complete: kept as it is
    assert again.returncode == 0 and "already complete" in again.stderr
    assert os.path.getmtime(marker) == mtime
    faces = _binary(
        "--config=smoke",
        f"--workdir={work}",
        "--dataset=generated",
        "--workers=1",
        default_logs=True,
    )
    assert faces.returncode == 0, faces.stderr[-2000:]
    if not devices.nvidia_driver_present():  # TensorFlow's CUDA start-up errors muted
        assert "cuInit" not in faces.stderr
    with open(os.path.join(work, "faces", "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["ffpp_root"] == os.path.join(work, "synthetic_ffpp")
    assert manifest["dataset"] == "generated" and "split" in manifest["split_policy"]
    assert manifest["methods"] == list(METHODS) and manifest["settings"]["frames_per_video"] == 0
    assert len(manifest["videos"]) == 6 * (1 + len(METHODS)) and manifest["complete"]
    with open(os.path.join(work, "commands.jsonl")) as f:
        stages = [json.loads(line)["stage"] for line in f]
    assert stages == ["make_synthetic_ffpp", "make_synthetic_ffpp", "prepare_faces"]
    refused = _binary(f"--workdir={work}", "--dataset=ffpp", f"--splits_dir={work}")
    assert refused.returncode == 1 and "--dataset_root is required" in refused.stderr


# --- bad inputs -----------------------------------------------------------------------------


def _bad_dataset(ffpp: str, root: pathlib.Path) -> tuple[str, str]:
    """The generated dataset with every kind of damage, and its split folder."""
    for method in (ORIGINAL, "Deepfakes", "Face2Face"):
        src, dst = videos_dir(ffpp, method, "raw"), videos_dir(str(root), method, "raw")
        os.makedirs(dst)
        for name in os.listdir(src):
            os.symlink(os.path.join(src, name), os.path.join(dst, name))
    originals = videos_dir(str(root), ORIGINAL, "raw")
    (pathlib.Path(originals) / "900.mp4").write_bytes(b"")  # zero bytes
    (pathlib.Path(originals) / "901.mp4").write_text("this is not a video\n")
    full = pathlib.Path(videos_dir(ffpp, ORIGINAL, "raw"), "000.avi").read_bytes()
    (pathlib.Path(originals) / "902.avi").write_bytes(full[: len(full) * 6 // 10])  # truncated
    rng = np.random.default_rng(0)
    noise = [rng.integers(90, 110, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(FRAMES)]
    write_video(os.path.join(originals, "903.avi"), noise, fps=25)  # no face
    # FaceSwap is absent; NeuralTextures exists at c23 only.
    nt = videos_dir(str(root), "NeuralTextures", "c23")
    shutil.copytree(videos_dir(ffpp, "NeuralTextures", "raw"), nt)
    # Folders of newer downloads, never read.
    os.makedirs(videos_dir(str(root), "FaceShifter", "raw"))
    os.makedirs(os.path.join(root, "manipulated_sequences", "Deepfakes", "masks", "videos"))
    splits = root / "splits"
    splits.mkdir()
    for split in ("train", "test"):
        pairs = json.loads(pathlib.Path(ffpp, "splits", f"{split}.json").read_text())
        if split == "train":
            pairs += [["900", "901"], ["902", "903"]]
        (splits / f"{split}.json").write_text(json.dumps(pairs))
    (splits / "val.json").write_text('[["004", ')  # does not parse
    return str(root), str(splits)


@pytest.mark.slow
def test_bad_inputs_are_reported_and_the_rest_is_processed(ffpp, tmp_path):
    root, splits = _bad_dataset(ffpp, tmp_path / "ffpp")
    result = _binary(
        "--dataset=ffpp",
        f"--dataset_root={root}",
        f"--splits_dir={splits}",
        "--config.faces.methods=Deepfakes,Face2Face,FaceSwap,NeuralTextures",
        "--workers=2",
        f"--workdir={tmp_path / 'work'}",
    )
    assert result.returncode == 3, result.stderr[-2000:]
    with open(tmp_path / "work" / "faces" / "manifest.json") as f:
        manifest = json.load(f)
    entries = {(e["method"], e["video"]): e for e in manifest["videos"]}
    errors = {
        "900": "0 bytes",
        "901": "OpenCV cannot open",
        "903": "No face found",
    }
    # Truncated: not failed, its frames are taken from the 5 of 10 declared that decode.
    truncated = entries[(ORIGINAL, "902")]
    assert truncated["status"] == "ok" and truncated["faces"] > 0, truncated
    assert truncated["frames_declared"] == FRAMES > truncated["frames_decoded"] > 0
    assert truncated["frames_read"] == truncated["frames_decoded"]
    assert "truncated" in result.stderr and f"declares {FRAMES} frames but" in result.stderr
    for video, fragment in errors.items():
        entry = entries[(ORIGINAL, video)]
        assert entry["status"] == "failed" and fragment in entry["error"], entry
        assert entry["shard"] is None
        assert fragment in result.stderr  # logged as well
    assert manifest["failed_videos"] == len(errors)
    good = [e for key, e in entries.items() if key[1] not in errors]
    assert good and all(e["status"] == "ok" and e["faces"] > 0 for e in good)
    assert {e["method"] for e in good} == {ORIGINAL, "Deepfakes", "Face2Face"}
    assert {e["split"] for e in good} == {"train", "test"}
    kinds = {(p["kind"], p["method"]) for p in manifest["problems"]}
    assert kinds == {
        ("missing_method", "FaceSwap"),
        ("missing_compression", "NeuralTextures"),
        ("split_file", ""),
    }
    messages = " ".join(p["message"] for p in manifest["problems"])
    assert "found: c23" in messages and "val.json" in messages
    # The val pair's videos are in no split (its file is unusable): reported, skipped.
    assert {u["method"] for u in manifest["unassigned"]} == {ORIGINAL, "Deepfakes", "Face2Face"}
    assert "manipulated_sequences/FaceShifter" in manifest["found"]["ignored_folders"]
    assert not glob.glob(str(tmp_path / "work" / "faces" / "*" / "*" / "*.tmp"))


# --- kill and resume ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_killed_run_resumes_to_exactly_the_uninterrupted_result(ffpp, tmp_path):
    args = [
        "--dataset=ffpp",
        f"--dataset_root={ffpp}",
        f"--splits_dir={ffpp}/splits",
        "--config.faces.face_finder=exact",
        "--config.faces.frames_per_video=0",
        "--config.faces.max_frames=5",
        "--workers=1",
        f"--workdir={tmp_path / 'killed'}",
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen(
        [sys.executable, "-m", "experiments.prepare_faces", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    progress = tmp_path / "killed" / "faces" / PROGRESS
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if progress.exists() and progress.read_text().count("\n") >= 3:
            break
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before = progress.read_text().count("\n")
    total = IDENTITIES * (1 + len(METHODS))
    assert 3 <= done_before < total, "the run was not stopped midway"

    resumed = _binary(*args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    reference = prepare_faces(
        _ffpp(ffpp),
        str(tmp_path / "reference" / "faces"),
        FaceSettings(face_finder="exact", max_frames=5),
        workers=2,
    )
    killed = _records(str(tmp_path / "killed" / "faces"))
    assert killed == _records(str(tmp_path / "reference" / "faces"))
    assert len(killed) == reference["totals"]["all"]["faces"] > 0
    with open(tmp_path / "killed" / "faces" / "manifest.json") as f:
        manifest = json.load(f)
    assert manifest["complete"] and len(manifest["videos"]) == total
    assert all(e["status"] == "ok" for e in manifest["videos"])
