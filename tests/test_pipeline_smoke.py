"""The whole pipeline, every binary as a subprocess, on a tiny generated dataset.

make_synthetic_ffpp -> prepare_faces -> train_ubm -> extract_likelihoods ->
run_detection (known, loo) -> make_tables -> make_figures, in a temporary work
directory, with CPU-sized settings given as flags; every artifact is checked. The
stages start as soon as the tests are collected (`start_in_background`, conftest.py):
they run beside the tests before these.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import subprocess
import textwrap

import pandas as pd
import pytest
import tensorflow as tf
from conftest import start_python_in_background, started_in_background, stop_process_group

from data_prep.methods import ORIGINAL
from data_prep.methods import PAPER_METHODS as METHODS
from experiments.pipeline import paper_results

pytestmark = pytest.mark.slow


# Runs the stages of the JSON list argv[1] in order, each a list of commands started at
# once (the two detection protocols are independent stages, as a user may run them);
# every command must exit 0 within argv[2] seconds. Exits 1 naming the first failure,
# with the end of its stderr.
_CHAIN = textwrap.dedent(
    """
    import json, os, subprocess, sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    timeout = float(sys.argv[2])
    for stage in json.loads(sys.argv[1]):
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", *command], env=env, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True,
            )
            for command in stage
        ]
        failed = []
        for command, process in zip(stage, processes):
            try:
                _, stderr = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                _, stderr = process.communicate()
                stderr += f"\\n(killed after {timeout} s)"
            if process.returncode != 0:
                failed.append(f"{command[0]} failed:\\n{stderr[-3000:]}")
        if failed:
            sys.exit("\\n".join(failed))
    """
)
# A stage of two detectors per method (the maps and the grey-pixel baseline) on a slow
# 2-core machine under load needs minutes.
STAGE_TIMEOUT_S = 600


def _stages(work: str) -> list[list[list[str]]]:
    """The pipeline's commands (`-m` module and flags), stage after stage."""
    common = ["--config=smoke", f"--workdir={work}"]

    def command(module: str, *flags: str) -> list[str]:
        return [f"experiments.{module}", *common, *flags]

    detection = ["--config.detector.epochs=1", "--config.detector.bootstrap_samples=20"]
    return [
        [
            command(
                "make_synthetic_ffpp",
                "--config.synthetic.identities=6",
                "--config.synthetic.frames=4",
                "--config.synthetic.seed=0",
            )
        ],
        [
            command(
                "prepare_faces",
                "--dataset=generated",
                f"--config.faces.methods={','.join(METHODS)}",
                "--config.faces.frames_per_video=0",
                "--workers=1",
                "--config.faces.face_finder=fast",
            )
        ],
        [command("train_ubm", "--config.ubm.max_steps=2", "--config.ubm.batch_size=4")],
        [command("extract_likelihoods", "--config.likelihoods.batch_size=32")],
        [command("run_detection", f"--protocol={p}", *detection) for p in ("known", "loo")],
        [command("make_tables")],
        [command("make_figures")],
    ]


def start_in_background(tmp_path_factory) -> tuple[str, subprocess.Popen]:
    """Starts the whole pipeline in a work directory; called by conftest.py as soon as
    tests of this module are collected, so that its subprocesses run beside the other
    tests. Returns the work directory and the process running the stages."""
    work = str(tmp_path_factory.mktemp("pipeline") / "work")
    stages = json.dumps(_stages(work))
    return work, start_python_in_background(_CHAIN, stages, str(STAGE_TIMEOUT_S))


def _json(path: str):
    return json.loads(pathlib.Path(path).read_text())


def _count(path: str) -> int:
    return sum(1 for _ in tf.data.TFRecordDataset(path))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> str:
    started = started_in_background(__name__) or start_in_background(tmp_path_factory)
    work, process = started
    try:
        _, stderr = process.communicate(timeout=STAGE_TIMEOUT_S * 8)
    finally:
        stop_process_group(process)
    assert process.returncode == 0, stderr[-6000:]
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
    """(the table's header line, from run.json beside it; its plain CSV)."""
    folder, name = os.path.split(path)
    reports = _json(os.path.join(folder, "run.json"))["reports"]
    return reports[name.removesuffix(".csv")]["header"], pd.read_csv(path).set_index("row")


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
    # The configuration the first stage resolved (with its dotted overrides), once.
    assert run["configs"]["run"]["config.json"]["synthetic"]["identities"] == 6
    assert {
        "ubm.ubm.seed",
        "detection_loo.detector.seed",
        "synthetic_dataset.settings.seed",
    } <= set(run["seeds"])
