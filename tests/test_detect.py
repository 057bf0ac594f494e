"""Detect: inputs expanded, the report's files and schema, bad inputs, exit statuses.

The report code is tested with a stub detector (no TensorFlow: fast); the binary
end to end with a real exported model folder built from a tiny work directory (slow).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
from conftest import PROJECT_ROOT, communicate_all

from data_prep import files
from data_prep.frames import VideoReadError
from experiments.pipeline import detect_report, html_report
from experiments.pipeline.detect_inputs import NoInputError, expand_inputs, input_keys

VIDEO_EXTENSIONS = (".avi", ".mp4")
IMAGE_EXTENSIONS = (".png", ".jpg")


def kind_of(path: str) -> str | None:
    ext = os.path.splitext(path)[1].lower()
    return "video" if ext in VIDEO_EXTENSIONS else "image" if ext in IMAGE_EXTENSIONS else None


def write_video(path: str, frames: int = 10, size: tuple[int, int] = (160, 120)) -> str:
    """A small Motion-JPEG .avi of a moving grey gradient."""
    width, height = size
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (width, height))
    assert writer.isOpened()
    for i in range(frames):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[:] = (40 + 10 * i, 100, 160)
        cv2.circle(frame, (width // 2, height // 2), 30, (200, 180, 170), -1)
        writer.write(frame)
    writer.release()
    return path


@dataclasses.dataclass
class _Scored:
    frames: np.ndarray
    boxes: np.ndarray
    crops: np.ndarray
    maps: np.ndarray
    scores: np.ndarray


@dataclasses.dataclass
class _Verdict:
    score: float
    low: float
    high: float
    fake: bool


class StubDetector:
    """The Detector interface: fixed boxes, a low-likelihood block in every map."""

    threshold = 0.5
    model_dir = "stub_model"
    manifest = {"format_version": 1, "project": "stub", "files": {"a": "b"}}

    def _scored(self, frames: list[int], fake: bool) -> _Scored:
        n = len(frames)
        maps = np.full((n, 64, 64), -3.0, np.float32)
        maps[:, 10:20, 30:50] = -12.0  # the unlikely region: drawn red
        rng = np.random.default_rng(0)
        return _Scored(
            frames=np.asarray(frames, np.int64),
            boxes=np.tile(np.asarray([[40, 20, 104, 84]], np.int64), (n, 1)),
            crops=rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
            maps=maps,
            scores=np.linspace(0.6, 0.9, n).astype(np.float32)
            if fake
            else np.full(n, 0.1, np.float32),
        )

    def score_video(self, path: str, frames_per_video: int = 32) -> _Scored:
        if "broken" in path:
            raise VideoReadError(f"Video {path} holds no frame that OpenCV can decode.")
        if "noface" in path:
            raise ValueError(f"No face found in any of the 10 frames read from {path!r}")
        count = int(cv2.VideoCapture(path).get(cv2.CAP_PROP_FRAME_COUNT))
        frames = np.round(np.linspace(0, count - 1, min(frames_per_video, count))).astype(int)
        return self._scored(sorted(set(frames.tolist())), fake="fake" in path)

    def score_image_file(self, path: str) -> _Scored:
        if cv2.imread(path) is None:
            raise ValueError(f"Cannot read {path!r} as an image")
        return self._scored([0], fake=False)

    def verdict(self, scores: np.ndarray, seed: int = 0) -> _Verdict:
        score = float(np.mean(scores))
        return _Verdict(
            score, float(np.min(scores)), float(np.max(scores)), score >= self.threshold
        )


@pytest.fixture
def media(tmp_path: pathlib.Path) -> pathlib.Path:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    write_video(str(folder / "real.avi"))
    write_video(str(folder / "sub" / "fake.avi"))
    cv2.imwrite(str(folder / "sub" / "face.png"), np.full((120, 160, 3), 128, np.uint8))
    (folder / "notes.txt").write_text("not media")
    (folder / "broken.avi").write_bytes(b"\x00" * 100)
    return folder


def test_expand_inputs_folder_glob_file_and_skips(media: pathlib.Path) -> None:
    expanded = expand_inputs([str(media)], kind_of)
    names = [os.path.relpath(f.path, media) for f in expanded.files]
    assert names == ["broken.avi", "real.avi", "sub/face.png", "sub/fake.avi"]
    assert [os.path.basename(p) for p in expanded.skipped] == ["notes.txt"]
    # A file named directly that is not media is kept (recorded as an error later);
    # the same file through a glob and by name is listed once.
    expanded = expand_inputs(
        [str(media / "notes.txt"), str(media / "*.avi"), str(media / "real.avi")], kind_of
    )
    assert [(os.path.basename(f.path), f.kind) for f in expanded.files] == [
        ("notes.txt", None),
        ("broken.avi", "video"),
        ("real.avi", "video"),
    ]
    assert input_keys(expanded.files) == ["notes_0", "broken_1", "real_2"]
    expanded = expand_inputs([str(media / "**" / "*.png")], kind_of)
    assert [os.path.basename(f.path) for f in expanded.files] == ["face.png"]


@pytest.mark.parametrize("pattern", ["missing.avi", "*.nothing", ""])
def test_expand_inputs_matching_nothing(tmp_path: pathlib.Path, pattern: str) -> None:
    with pytest.raises(NoInputError, match="matches no file"):
        expand_inputs([str(tmp_path / pattern) if pattern else ""], kind_of)
    with pytest.raises(NoInputError, match="No --input"):
        expand_inputs([], kind_of)


def test_heatmap_red_where_unlikely() -> None:
    loglik = np.full((64, 64), -3.0)
    loglik[:8] = -12.0
    lo, hi = detect_report.map_range(loglik[None])
    colours = detect_report.heatmap(loglik, lo, hi)
    b, g, r = colours[2, 2].astype(int)
    assert r > 100 and b < 50  # unlikely: red
    b, g, r = colours[40, 40].astype(int)
    assert b > 100 and r < 50  # likely: blue
    frame = np.zeros((100, 200, 3), np.uint8)
    figure = detect_report.panels(
        frame, (50, 10, 114, 74), np.zeros((64, 64, 3), np.uint8), loglik, lo, hi, 0.9, 0.5, "x"
    )
    assert figure.shape[0] == detect_report.CAPTION_HEIGHT + detect_report.PANEL_SIZE
    # Three panels: the frame (aspect kept), the crop and the raw map (square).
    assert figure.shape[1] == 512 + 4 + 256 + 4 + 256


def test_read_frames_at(tmp_path: pathlib.Path) -> None:
    path = write_video(str(tmp_path / "v.avi"), frames=6)
    got = list(detect_report.read_frames_at(path, [5, 0, 3, 9]))
    assert [i for i, _ in got] == [0, 3, 5]
    assert got[0][1].shape == (120, 160, 3)


def test_report_files_and_schema(media: pathlib.Path, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out"
    expanded = expand_inputs([str(media)], kind_of)
    report = detect_report.run(
        StubDetector(), expanded, str(out), frames_per_video=4, progress=False
    )
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert set(on_disk) >= {"model", "threshold", "inputs", "counts", "skipped"}
    assert on_disk["model"]["path"] == "stub_model"
    assert on_disk["model"]["manifest"]["format_version"] == 1
    assert on_disk["counts"] == {"inputs": 4, "scored": 3, "failed": 1, "skipped": 1}
    by_name = {os.path.basename(e["path"]): e for e in on_disk["inputs"]}
    broken = by_name["broken.avi"]
    assert broken["score"] is None and broken["verdict"] is None and "decode" in broken["error"]
    for name, verdict in (("real.avi", "real"), ("fake.avi", "fake"), ("face.png", "real")):
        entry = by_name[name]
        assert entry["verdict"] == verdict and entry["error"] is None
        assert entry["low"] <= entry["score"] <= entry["high"]
        for frame in entry["frames"]:
            assert set(frame) == {"frame", "score", "box"} and len(frame["box"]) == 4
            png = cv2.imread(str(out / entry["frames_dir"] / f"{frame['frame']}.png"))
            assert png is not None and png.shape[0] == 284
    assert [f["frame"] for f in by_name["real.avi"]["frames"]] == [0, 3, 6, 9]
    assert by_name["face.png"]["kind"] == "image" and by_name["face.png"]["video"] is None
    video = by_name["fake.avi"]["video"]
    assert video and video.startswith("videos/fake_3.")
    capture = cv2.VideoCapture(str(out / video))
    assert sum(1 for _ in iter(lambda: capture.read()[0], False)) == 4
    with open(out / "frames.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(detect_report.CSV_FIELDS)
    assert len(rows) == 4 + 1 + 4
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 + 1 + 4 + 2  # heatmaps + 2 plots
    assert "http" not in page and "<script" not in page
    assert not list(out.rglob("*.tmp*"))


def test_not_media_named_directly(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("x")
    report = detect_report.run(
        StubDetector(), expand_inputs([str(path)], kind_of), str(tmp_path / "o"), progress=False
    )
    assert report["inputs"][0]["error"] == "not a video or image (extension .txt)"


def test_html_limits_heatmaps(tmp_path: pathlib.Path) -> None:
    path = write_video(str(tmp_path / "long.avi"), frames=20)
    report = detect_report.run(
        StubDetector(), expand_inputs([path], kind_of), str(tmp_path / "o"), 20, progress=False
    )
    assert len(report["inputs"][0]["frames"]) == 20
    page = (tmp_path / "o" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == html_report.MAX_HEATMAPS + 1
    assert html_report.evenly_spaced(20) == [0, 3, 5, 8, 11, 14, 16, 19]


# --- The binary end to end, with a real (tiny, untrained) exported model folder. ---
#
# Every detect run of this module is started at once by the `detect_runs` fixture (the
# runs are independent, and each mostly keeps one core busy): one real `python -m
# experiments.detect` run whose inputs partly fail (exit 3), and one process that runs
# the binary's own `app.run(main)` several times, as absl re-parses the flags on each
# call, for the good-inputs run (exit 0) and the usage errors (exit 1): one TensorFlow
# import and start-up instead of one per case.

_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}

# Runs experiments.detect's main through absl's app.run once per argv in the JSON list
# argv[1], each from freshly reset flags; prints one RESULTS line: per run the exit
# status (as the process would have exited) and what was written to stderr (a traceback
# included, as the interpreter would have printed it).
_DETECT_RUNS = textwrap.dedent(
    """
    import contextlib, io, json, sys, traceback
    from absl import app, flags
    from experiments import detect

    results = []
    for argv in json.loads(sys.argv[1]):
        flags.FLAGS.unparse_flags()
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            try:
                app.run(detect.main, argv=["detect", *argv])
                status = 0
            except SystemExit as exit_:
                code = exit_.code
                status = 0 if code is None else code if isinstance(code, int) else 1
            except BaseException:
                traceback.print_exc()
                status = 1
        results.append({"returncode": status, "stderr": stderr.getvalue()})
    print("RESULTS " + json.dumps(results), flush=True)
    """
)


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=PROJECT_ROOT,
        env=_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """A model folder written through model_folder's writer: a tiny UBM and LeNet."""
    import keras

    from classifier.lenet import build_lenet
    from data_prep.face_settings import FaceSettings
    from experiments.pipeline import model_folder
    from pixelcnn_pp import run_folder
    from pixelcnn_pp.config import UBMConfig

    config = UBMConfig(nr_resnet=1, nr_filters=8, nr_logistic_mix=2, dropout_rate=0.0)

    def fill(folder: str) -> None:
        keras.utils.set_random_seed(0)
        run_folder.build_model(config).save_weights(
            os.path.join(folder, model_folder.UBM_WEIGHTS_FILE)
        )
        files.write_json_atomically(
            os.path.join(folder, model_folder.UBM_CONFIG_FILE), {"ubm": dataclasses.asdict(config)}
        )
        build_lenet((64, 64, 1), 2, map_mean=-4.0, map_std=1.0).save(
            os.path.join(folder, model_folder.DETECTOR_FILE)
        )
        files.write_json_atomically(os.path.join(folder, model_folder.DETECTOR_CONFIG_FILE), {})
        files.write_json_atomically(
            os.path.join(folder, model_folder.FACE_SETTINGS_FILE), FaceSettings().to_json()
        )
        files.write_json_atomically(
            os.path.join(folder, model_folder.DECISION_FILE), {"threshold": 0.5, "rule": ">="}
        )

    path = str(tmp_path_factory.mktemp("model") / "model")
    model_folder.write_model_folder(path, fill, {"trained_on": {"method": "test"}})
    return path


@pytest.fixture(scope="module")
def face_inputs(tmp_path_factory) -> pathlib.Path:
    """Two generated face videos, a still of one, a faceless video, junk files."""
    from data_prep.synthetic import assembly, rendering

    folder = tmp_path_factory.mktemp("faces")
    for index in (0, 1):
        identity = rendering.make_identity(0, index, 192, 160)
        video = rendering.render_video(identity, 6, 192, 160, seed=0)
        assembly.write_video(str(folder / f"person{index}.avi"), video.frames, 25.0)
    cv2.imwrite(str(folder / "still.png"), video.frames[0])
    write_video(str(folder / "noface.avi"), frames=4)
    (folder / "broken.mp4").write_bytes(b"\x00" * 200)
    (folder / "README.txt").write_text("not media")
    return folder


@pytest.fixture(scope="module")
def detect_runs(model_dir: str, face_inputs: pathlib.Path, tmp_path_factory) -> dict:
    """Output folders and results of every detect run of the module, run concurrently."""
    tmp = tmp_path_factory.mktemp("detect")
    video = f"--input={face_inputs / 'person0.avi'}"
    # A model folder tampered with (decision.json changed), one incomplete (it is gone).
    changed, incomplete = tmp / "changed_model", tmp / "incomplete_model"
    for broken in (changed, incomplete):
        shutil.copytree(model_dir, broken)
    (changed / "decision.json").write_text('{"threshold": 0.0}')
    (incomplete / "decision.json").unlink()
    (tmp / "file").write_text("x")
    outs = {name: tmp / name for name in ("report", "good", "changed", "incomplete", "none")}
    cases = {
        # Only good inputs: exit status 0.
        "good": [f"--model={model_dir}", f"--input={face_inputs / 'person*.avi'}",
                 f"--out={outs['good']}"],
        # A model folder changed, then incomplete: exit 1, nothing written.
        "changed": [f"--model={changed}", video, f"--out={outs['changed']}"],
        "incomplete": [f"--model={incomplete}", video, f"--out={outs['incomplete']}"],
        # An --input that matches nothing.
        "no_match": [f"--model={model_dir}", f"--input={tmp / 'nothing*.mp4'}",
                     f"--out={outs['none']}"],
        # An output folder that cannot be written (below a file).
        "unwritable": [f"--model={model_dir}", video, f"--out={tmp / 'file' / 'out'}"],
    }  # fmt: skip
    report = _start(
        "-m",
        "experiments.detect",
        f"--model={model_dir}",
        f"--input={face_inputs}",
        f"--input={face_inputs / 'README.txt'}",
        f"--out={outs['report']}",
        "--frames_per_video=3",
    )
    reruns = _start("-c", _DETECT_RUNS, json.dumps(list(cases.values())))
    report_result, reruns_result = communicate_all([report, reruns], timeout=400)
    results = {"report": report_result}
    assert reruns_result.returncode == 0, reruns_result.stderr[-3000:]
    line = [ln for ln in reruns_result.stdout.splitlines() if ln.startswith("RESULTS ")][-1]
    for name, result in zip(cases, json.loads(line[len("RESULTS ") :]), strict=True):
        results[name] = subprocess.CompletedProcess(
            cases[name], result["returncode"], "", result["stderr"]
        )
    return {"outs": outs, "results": results}


@pytest.mark.slow
def test_detect_binary_report_and_bad_inputs(model_dir: str, detect_runs: dict) -> None:
    out = detect_runs["outs"]["report"]
    result = detect_runs["results"]["report"]
    assert result.returncode == 3, result.stderr[-3000:]  # some inputs failed
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["path"] == model_dir
    assert report["model"]["manifest"]["format_version"] == 1
    assert report["threshold"] == 0.5
    by_name = {os.path.basename(e["path"]): e for e in report["inputs"]}
    assert set(by_name) == {
        "broken.mp4", "noface.avi", "person0.avi", "person1.avi", "still.png", "README.txt"
    }  # fmt: skip
    # Named directly, README.txt is an error even though the folder holds it too.
    assert report["counts"] == {"inputs": 6, "scored": 3, "failed": 3, "skipped": 0}
    assert by_name["README.txt"]["error"] == "not a video or image (extension .txt)"
    assert "No face found in any of the 3 frames" in by_name["noface.avi"]["error"]
    assert by_name["broken.mp4"]["error"]
    for name in ("person0.avi", "person1.avi", "still.png"):
        entry = by_name[name]
        assert entry["error"] is None and entry["verdict"] in ("fake", "real")
        assert entry["verdict"] == ("fake" if entry["score"] >= 0.5 else "real")
        assert entry["low"] <= entry["score"] <= entry["high"]
        assert len(entry["frames"]) == (1 if name == "still.png" else 3)
        for frame in entry["frames"]:
            x0, y0, x1, y1 = frame["box"]
            assert 0 <= x0 < x1 <= 192 and 0 <= y0 < y1 <= 160 and x1 - x0 == y1 - y0
            assert (out / entry["frames_dir"] / f"{frame['frame']}.png").is_file()
    for name in ("person0.avi", "person1.avi"):
        assert (out / by_name[name]["video"]).is_file()
    for name in ("noface.avi", "broken.mp4", "README.txt"):
        assert by_name[name]["score"] is None and by_name[name]["verdict"] is None
    with open(out / "frames.csv") as f:
        assert len(list(csv.DictReader(f))) == 3 + 3 + 1
    assert (out / "report.html").stat().st_size > 10_000
    assert "not a video or image" in result.stderr  # one line per input, errors too

    # Only good inputs: exit status 0.
    result = detect_runs["results"]["good"]
    assert result.returncode == 0, result.stderr[-3000:]
    good = detect_runs["outs"]["good"]
    assert json.loads((good / "report.json").read_text())["counts"]["scored"] == 2


@pytest.mark.slow
def test_detect_binary_usage_errors(detect_runs: dict) -> None:
    results, outs = detect_runs["results"], detect_runs["outs"]
    # A model folder incomplete, then tampered with: exit 1, nothing written.
    for name, check in (("changed", "has been changed"), ("incomplete", "is incomplete")):
        result = results[name]
        assert result.returncode == 1 and check in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        assert not outs[name].exists()
    # An --input that matches nothing.
    result = results["no_match"]
    assert result.returncode == 1 and "matches no file" in result.stderr
    assert "Traceback" not in result.stderr
    assert not outs["none"].exists()
    # An output folder that cannot be written (below a file).
    result = results["unwritable"]
    assert result.returncode == 1 and "Cannot write to --out" in result.stderr
    assert "Traceback" not in result.stderr
