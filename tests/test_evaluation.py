"""Cross-dataset evaluation: an exported model scored on a generated FF++ tree and on
the same videos in the generic folder layout gives metrics.json with run_detection's
metrics; the model folder and the training work directory are untouched; the cross
table parses as csv, md and tex, with published figures only in matching cells; bad
inputs get clear messages.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from conftest import PROJECT_ROOT, copy_workdir

from classifier import metrics as metrics_lib
from data_prep.files import write_json_atomically
from experiments.pipeline import cross_tables
from experiments.pipeline.workdir import Workdir

IDENTITIES, FRAMES = 6, 3


def _tree_digest(folder: str) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    digests = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                digests[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return digests


def folder_layout(ffpp_root: str, out: str) -> str:
    """The generated FF++ tree as ROOT/real/*.avi and ROOT/fake/<method>/*.avi (as
    make reproduce arranges it)."""
    os.makedirs(os.path.join(out, "real"))
    originals = os.path.join(ffpp_root, "original_sequences", "youtube", "raw", "videos")
    for name in os.listdir(originals):
        shutil.copy(os.path.join(originals, name), os.path.join(out, "real", name))
    manipulated = os.path.join(ffpp_root, "manipulated_sequences")
    for method in os.listdir(manipulated):
        videos = os.path.join(manipulated, method, "raw", "videos")
        shutil.copytree(videos, os.path.join(out, "fake", method))
    return out


@pytest.fixture(scope="module")
def setup(tiny_workdir, tmp_path_factory):
    """(workdir, model_dir, generated root, digests of both before any evaluation)."""
    from data_prep.synthetic import generate_synthetic_ffpp
    from experiments.pipeline import model_folder

    workdir = copy_workdir(tiny_workdir, str(tmp_path_factory.mktemp("work")))
    model_dir = os.path.join(workdir.root, "model")
    model_folder.export_model(workdir, model_dir)
    data = str(tmp_path_factory.mktemp("data") / "gen")
    generate_synthetic_ffpp(data, identities=IDENTITIES, frames=FRAMES, seed=7)
    return workdir, model_dir, data, _tree_digest(workdir.root)


@pytest.fixture(scope="module")
def evaluated(setup, tmp_path_factory):
    """Evaluations of the generated test split and of its folder-layout copy."""
    from experiments.pipeline import evaluation

    workdir, model_dir, data, _ = setup
    out = {}
    out["generated"] = str(tmp_path_factory.mktemp("eval") / "generated")
    evaluation.evaluate_model(
        model_dir, "generated", data, out["generated"], frames_per_video=2, bootstrap_samples=20
    )
    folder = folder_layout(data, str(tmp_path_factory.mktemp("folder") / "other"))
    out["folder"] = str(tmp_path_factory.mktemp("eval") / "folder")
    evaluation.evaluate_model(
        model_dir, "folder", folder, out["folder"], frames_per_video=2, bootstrap_samples=20
    )
    return out


def _read(folder: str) -> dict:
    with open(os.path.join(folder, "metrics.json")) as f:
        return json.load(f)


@pytest.mark.slow
def test_metrics_json_has_the_detection_metrics(evaluated):
    report = _read(evaluated["generated"])
    for metric in metrics_lib.METRICS:
        assert {"value", "ci_low", "ci_high"} <= set(report["metrics"][metric])
    assert report["metrics"]["counts"]["videos"] > 0
    evaluated_on = report["evaluated"]
    assert evaluated_on["dataset"] == "generated" and evaluated_on["split"] == "test"
    assert evaluated_on["compression"] == "raw" and evaluated_on["split_policy"]
    assert set(evaluated_on["frames_scored"]) >= {"original", *evaluated_on["methods"]}
    assert set(report["per_method"]) == set(evaluated_on["methods"])
    assert report["model"]["trained_on"]["protocol"] == "all"
    predictions = pd.read_csv(os.path.join(evaluated["generated"], "predictions.csv"))
    assert len(predictions) == report["metrics"]["counts"]["frames"]
    assert set(predictions["split"]) == {"test"}  # only the chosen split is scored
    folder = _read(evaluated["folder"])
    assert folder["evaluated"]["split_policy"].startswith("files outside")
    assert folder["metrics"]["counts"]["real_videos"] == IDENTITIES  # every file in test


@pytest.mark.slow
def test_evaluation_writes_nothing_to_the_model_or_the_workdir(setup, evaluated):
    from experiments.pipeline import model_folder

    workdir, model_dir, _, before = setup
    assert _tree_digest(workdir.root) == before  # model/ included: weights unchanged
    model_folder.verify(model_dir)
    report = _read(evaluated["folder"])
    assert report["leakage"]["model_files_unchanged"] is True
    assert report["leakage"]["training_data"]["protocol"] == "all"
    assert report["leakage"]["same_dataset_as_training"] is False
    assert report["leakage"]["split_seen_in_training"] is False


@pytest.mark.slow
def test_bad_inputs_say_what_to_do(setup, tmp_path):
    from experiments.pipeline import evaluation
    from experiments.pipeline.model_folder import ModelFolderError

    _, model_dir, data, _ = setup
    out = str(tmp_path / "out")
    with pytest.raises(evaluation.EvaluationError, match="Unknown dataset 'bogus'"):
        evaluation.evaluate_model(model_dir, "bogus", data, out)
    with pytest.raises(FileNotFoundError, match="no complete generated dataset"):
        evaluation.evaluate_model(model_dir, "generated", str(tmp_path / "none"), out)
    with pytest.raises(evaluation.EvaluationError, match="inside the model folder"):
        evaluation.evaluate_model(model_dir, "generated", data, os.path.join(model_dir, "e"))
    broken = str(tmp_path / "broken")
    shutil.copytree(model_dir, broken)
    os.remove(os.path.join(broken, "detector.keras"))
    with pytest.raises(ModelFolderError, match="detector.keras is missing"):
        evaluation.evaluate_model(broken, "generated", data, out)
    with pytest.raises(evaluation.EvaluationError, match="Unknown split"):
        evaluation.evaluate_model(model_dir, "generated", data, out, split="dev")


@pytest.mark.slow
def test_cross_table_of_real_evaluations_parses(evaluated, tmp_path):
    workdir = Workdir(str(tmp_path / "w"))
    paths = cross_tables.make_cross_table(workdir, [evaluated["generated"], evaluated["folder"]])
    table = pd.read_csv(paths[0])
    assert "Folder other" in set(table["test_set"])
    assert any(c.startswith("Generated FF++ ") and c.endswith(" raw") for c in table["test_set"])
    assert set(table["kind"]) == {"ours"}  # trained on generated data: no published cell


def _fake_evaluation(folder, dataset, trained, compression="raw", methods=()):
    def report(value):
        metric = {"value": value, "ci_low": value - 0.1, "ci_high": min(1.0, value + 0.1)}
        return {**{m: metric for m in metrics_lib.METRICS}, "counts": {"frames": 8, "videos": 4}}

    write_json_atomically(
        os.path.join(folder, "metrics.json"),
        {
            "metrics": report(0.8),
            "per_method": {m: report(0.7) for m in methods},
            "evaluated": {
                "dataset": dataset,
                "root": f"/data/{dataset}",
                "compression": compression,
            },
            "model": {"trained_on": trained},
            "leakage": {"same_dataset_as_training": trained["dataset"] == dataset},
        },
    )
    return str(folder)


def _text(path: str) -> str:
    with open(path) as f:
        return f.read()


FFPP_C23 = {"dataset": "ffpp", "compression": "c23", "protocol": "all", "method": "all"}


def test_cross_table_rows_columns_and_published_cells(tmp_path):
    folders = [
        _fake_evaluation(tmp_path / "a", "celebdf", FFPP_C23),
        _fake_evaluation(tmp_path / "b", "dfdc", FFPP_C23),
        _fake_evaluation(tmp_path / "c", "ffpp", FFPP_C23, "c40", ("Deepfakes", "FaceSwap")),
        _fake_evaluation(tmp_path / "d", "celebdf", {**FFPP_C23, "compression": "raw"}),
    ]
    workdir = Workdir(str(tmp_path / "w"))
    csv_path, md_path, tex_path = cross_tables.make_cross_table(workdir, folders)
    table = pd.read_csv(csv_path)
    published = table[table["kind"] == "published"]
    assert dict(zip(published["test_set"], published["frame_auc"], strict=True)) == {
        "Celeb-DF v2": 0.7365,
        "DFDC": 0.7077,
    }
    assert published["video_auc"].isna().all()
    ours = table[table["kind"] == "ours"]
    assert set(ours["training"]) == {"FF++ c23, protocol all", "FF++ raw, protocol all"}
    assert {"FF++ Deepfakes c40", "FF++ FaceSwap c40", "FF++ all c40"} <= set(ours["test_set"])
    md_text = _text(md_path)
    md = md_text.splitlines()
    rows = [line for line in md if line.startswith("| ")]
    assert len(rows) == 1 + 2 + 1  # header, two trainings, the published row
    assert all(row.count("|") == rows[0].count("|") for row in rows)
    assert "Yan et al." in md_text
    tex = _text(tex_path)
    assert r"\begin{tabular}" in tex and r"\end{tabular}" in tex
    body = [line for line in tex.splitlines() if line.endswith(r"\\")]
    assert all(line.count("&") == len(table["test_set"].unique()) for line in body)


def test_no_published_cell_without_ffpp_c23_training(tmp_path):
    trained = {"dataset": "generated", "compression": "raw", "protocol": "all", "method": "all"}
    table = cross_tables.build_table([_fake_evaluation(tmp_path / "a", "celebdf", trained)])
    assert not table.references
    cell = table.cells[("Generated FF++ raw, protocol all", "Celeb-DF v2")]
    assert math.isclose(cell.frame_auc[0], 0.8)


def test_cross_table_reads_the_evaluation_metrics_file():
    from experiments.pipeline import detection

    assert cross_tables.METRICS_FILE == detection.METRICS_FILE


def test_cross_table_bad_inputs(tmp_path):
    with pytest.raises(cross_tables.CrossTableError, match="does not exist"):
        cross_tables.expand_folders([str(tmp_path / "missing")])
    with pytest.raises(cross_tables.CrossTableError, match="No finished evaluation"):
        cross_tables.expand_folders([str(tmp_path / "*")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(cross_tables.CrossTableError, match="not a finished evaluation"):
        cross_tables.build_table([str(tmp_path / "empty")])
    a = _fake_evaluation(tmp_path / "a", "dfdc", FFPP_C23)
    b = _fake_evaluation(tmp_path / "b", "dfdc", FFPP_C23)
    with pytest.raises(cross_tables.CrossTableError, match="Two evaluations"):
        cross_tables.build_table([a, b])
    assert cross_tables.expand_folders([str(tmp_path / "*")]) == [a, b]


def _binary(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
def test_binaries_refuse_bad_flags_without_a_traceback(tmp_path):
    result = _binary(
        "experiments.evaluate", "--model=m", "--dataset=bogus", "--root=r", f"--out={tmp_path}"
    )
    assert result.returncode == 1 and "Unknown --dataset='bogus'" in result.stderr
    assert "Traceback" not in result.stderr
    result = _binary("experiments.evaluate", f"--model={tmp_path}/none", "--dataset=folder",
                     "--root=r", f"--out={tmp_path}/o")  # fmt: skip
    assert result.returncode == 1 and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    result = _binary("experiments.make_cross_table", f"--workdir={tmp_path}")
    assert result.returncode == 1 and "No finished evaluation folder" in result.stderr
