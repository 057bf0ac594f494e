"""The whole pipeline, every binary as a subprocess, on a tiny generated dataset.

make_synthetic_ffpp -> prepare_faces -> train_ubm -> extract_likelihoods ->
run_detection (known, loo) -> make_tables -> make_figures, in a temporary work
directory, with CPU-sized settings given as flags; every artifact is checked.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pathlib
import subprocess
import sys

import pandas as pd
import pytest
import tensorflow as tf
from conftest import PROJECT_ROOT

from data_prep.methods import ORIGINAL
from data_prep.methods import PAPER_METHODS as METHODS
from experiments.pipeline import paper_results

pytestmark = pytest.mark.slow


def _run(module: str, *flags: str, timeout: float = 240.0) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, "-m", f"experiments.{module}", *flags],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{module} failed:\n{result.stderr[-3000:]}"
    return result


def _json(path: str):
    return json.loads(pathlib.Path(path).read_text())


def _count(path: str) -> int:
    return sum(1 for _ in tf.data.TFRecordDataset(path))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> str:
    work = str(tmp_path_factory.mktemp("pipeline") / "work")
    common = ("--config=smoke", f"--workdir={work}")
    _run("make_synthetic_ffpp", *common, "--identities=6", "--frames=4", "--seed=0")
    _run(
        "prepare_faces",
        *common,
        "--dataset=generated",
        f"--methods={','.join(METHODS)}",
        "--frames_per_video=0",
        "--workers=1",
        "--detection=fast",
    )
    _run("train_ubm", *common, "--max_steps=2", "--batch_size=4")
    _run("extract_likelihoods", *common, "--batch_size=32")
    for protocol in ("known", "loo"):
        _run(
            "run_detection",
            *common,
            f"--protocol={protocol}",
            "--epochs=1",
            "--bootstrap_samples=20",
        )
    _run("make_tables", *common)
    _run("make_figures", *common)
    return work


def test_likelihood_shards_mirror_the_face_shards(workdir):
    faces = sorted(
        os.path.relpath(os.path.join(d, f), f"{workdir}/faces")
        for d, _, files in os.walk(f"{workdir}/faces")
        for f in files
        if f.endswith(".tfrecord")
    )
    liks = sorted(
        os.path.relpath(os.path.join(d, f), f"{workdir}/likelihoods")
        for d, _, files in os.walk(f"{workdir}/likelihoods")
        for f in files
        if f.endswith(".tfrecord")
    )
    assert faces and faces == liks
    sources = {p.split(os.sep)[1] for p in faces}
    assert sources == {ORIGINAL, *METHODS}
    for rel in faces:
        assert _count(f"{workdir}/faces/{rel}") == _count(f"{workdir}/likelihoods/{rel}")
    manifest = _json(f"{workdir}/likelihoods/manifest.json")
    assert manifest["last_run"]["written"] == manifest["shards_total"] == len(faces)
    assert not manifest["last_run"]["bad_shards"]
    frames = sum(v["frames"] for split in manifest["counts"].values() for v in split.values())
    assert frames == sum(_count(f"{workdir}/faces/{rel}") for rel in faces)


@pytest.mark.parametrize("protocol", ["known", "loo"])
def test_detection_outputs(workdir, protocol):
    for method in METHODS:
        folder = f"{workdir}/detection/{protocol}/{method}"
        assert os.path.getsize(f"{folder}/model.keras") > 100_000
        with open(f"{folder}/predictions.csv") as f:
            rows = list(csv.DictReader(f))
        assert set(rows[0]) == {"split", "method", "video", "frame", "label", "score"}
        assert {r["split"] for r in rows} == {"val", "test"}
        assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows)
        test_methods = {r["method"] for r in rows if r["split"] == "test"}
        assert test_methods == {ORIGINAL, method}
        report = _json(f"{folder}/metrics.json")
        for metric in ("frame_accuracy", "frame_auc", "frame_eer", "video_accuracy", "video_auc"):
            entry = report["test"][metric]
            assert set(entry) == {"value", "ci_low", "ci_high"}
        assert report["test"]["counts"]["frames"] == sum(r["split"] == "test" for r in rows)
        train_sources = set(report["training"]["composition"]["train"])
        if protocol == "loo":
            assert method not in train_sources and ORIGINAL in train_sources
        else:
            assert train_sources == {ORIGINAL, method}


def _table(path: str) -> tuple[str, pd.DataFrame]:
    with open(path) as f:
        header = f.readline()
        return header, pd.read_csv(io.StringIO(f.read())).set_index("row")


def test_tables_hold_the_papers_numbers_and_ours(workdir):
    header, t1 = _table(f"{workdir}/results/table1.csv")
    assert "generated" in header and "NOT comparable" in header
    for column, value in paper_results.TABLE1_PAPER.items():
        assert float(t1.loc[paper_results.PAPER_METHOD, column]) == pytest.approx(value)
    ours = t1.loc["This run: frame accuracy (%)"]
    assert all(0.0 <= float(ours[c]) <= 100.0 for c in paper_results.COLUMNS)
    _, t2 = _table(f"{workdir}/results/table2.csv")
    assert float(t2.loc[paper_results.PAPER_METHOD, "Avg"]) == pytest.approx(95.73)
    assert 0.0 <= float(t2.loc["This run: frame accuracy (%)", "Avg"]) <= 100.0
    for name, paper_value in (("table1", "98.25"), ("table2", "98.41")):
        for ext in ("md", "tex"):
            text = pathlib.Path(f"{workdir}/results/{name}.{ext}").read_text()
            assert "NOT comparable" in text and paper_value in text, (name, ext)


def test_figures_and_run_record(workdir):
    for name in ("fig3_loglik_histograms.png", "fig4_likelihood_maps.png"):
        with open(f"{workdir}/results/{name}", "rb") as f:
            data = f.read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    run = _json(f"{workdir}/results/run.json")
    stages = {c["stage"] for c in run["commands"]}
    assert {
        "prepare_faces",
        "train_ubm",
        "extract_likelihoods",
        "run_detection",
        "make_tables",
        "make_figures",
    } <= stages
    assert run["versions"]["tensorflow"] == tf.__version__
    assert run["configs"]["ubm"] and run["configs"]["detection_known"]
    assert {
        "ubm.ubm.seed",
        "detection_loo.detector.seed",
        "synthetic_dataset.settings.seed",
    } <= set(run["seeds"])
