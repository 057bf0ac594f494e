"""The cross table with cross-compression evaluations of the generated dataset: one
column per method and level, and notes saying what the generated c23 and c40 are.
Built from metrics.json fixtures, without TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
from conftest import PROJECT_ROOT

from data_prep.files import write_json_atomically
from experiments.pipeline import cross_tables
from experiments.pipeline.workdir import Workdir

METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
TRAINED = {"dataset": "generated", "compression": "raw", "protocol": "all", "method": "all"}


def _evaluation(folder, dataset: str, compression: str, auc: float, trained=TRAINED) -> str:
    def report(value: float) -> dict:
        metric = {"value": value, "ci_low": value - 0.05, "ci_high": min(1.0, value + 0.05)}
        return {
            "frame_auc": metric,
            "video_auc": metric,
            "counts": {"frames": 80, "videos": 20},
        }

    methods = METHODS if dataset == "generated" else ()
    write_json_atomically(
        os.path.join(folder, "metrics.json"),
        {
            "metrics": report(auc),
            "per_method": {m: report(auc - 0.01 * i) for i, m in enumerate(methods)},
            "evaluated": {"dataset": dataset, "root": str(folder), "compression": compression},
            "model": {"trained_on": trained},
            "leakage": {"same_dataset_as_training": dataset == trained["dataset"]},
        },
    )
    return str(folder)


def test_generated_levels_make_one_column_per_method_and_level(tmp_path):
    folders = [
        _evaluation(tmp_path / "generated_test", "generated", "raw", 0.9),
        _evaluation(tmp_path / "generated_test_c23", "generated", "c23", 0.8),
        _evaluation(tmp_path / "generated_test_c40", "generated", "c40", 0.6),
        _evaluation(tmp_path / "folder_seed1", "folder", "raw", 0.7),
    ]
    csv_path, md_path, tex_path = cross_tables.make_cross_table(
        Workdir(str(tmp_path / "w")), folders
    )
    expected = [
        f"Generated FF++ {m} {level}" for level in ("raw", "c23", "c40") for m in (*METHODS, "all")
    ] + ["Folder folder_seed1"]
    table = pd.read_csv(csv_path)
    assert list(table["test_set"]) == expected
    assert set(table["training"]) == {"Generated FF++ raw, protocol all"}
    cells = table.set_index("test_set")
    assert cells.loc["Generated FF++ all c23", "frame_auc"] == 0.8
    assert cells.loc["Generated FF++ Face2Face c40", "video_auc"] == 0.59
    assert cells.loc["Generated FF++ all c40", "evaluation"].endswith("generated_test_c40")
    with open(md_path) as f:
        md = f.read()
    header = next(line for line in md.splitlines() if line.startswith("| Trained on"))
    assert header.count("|") == len(expected) + 2
    assert "| Generated FF++ Deepfakes c23 |" in header
    note = next(line for line in md.splitlines() if line.startswith("- Generated FF++ c23 / c40"))
    assert "JPEG at quality" in note and "H.264 CRF 23" in note and "H.264 CRF 40" in note
    with open(tex_path) as f:
        assert "JPEG at quality" in f.read()


def test_no_level_note_without_generated_c23_or_c40(tmp_path):
    ffpp_c23 = {**TRAINED, "dataset": "ffpp", "compression": "c23"}
    table = cross_tables.build_table(
        [
            _evaluation(tmp_path / "a", "generated", "raw", 0.9),
            _evaluation(tmp_path / "b", "ffpp", "c40", 0.7, trained=ffpp_c23),
        ]
    )
    assert "FF++ all c40" in table.columns and "Generated FF++ all raw" in table.columns
    assert not any("stand-in" in note for note in table.notes)


def test_a_model_trained_on_generated_c23_is_its_own_row(tmp_path):
    c23 = {**TRAINED, "compression": "c23"}
    table = cross_tables.build_table(
        [
            _evaluation(tmp_path / "a", "generated", "raw", 0.9),
            _evaluation(tmp_path / "b", "generated", "c40", 0.7, trained=c23),
        ]
    )
    assert table.rows == ["Generated FF++ raw, protocol all", "Generated FF++ c23, protocol all"]
    assert ("Generated FF++ c23, protocol all", "Generated FF++ all c40") in table.cells
    assert ("Generated FF++ c23, protocol all", "Generated FF++ all raw") not in table.cells


def test_evaluate_refuses_several_levels_without_a_folder_each(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.evaluate",
            f"--model={tmp_path}",
            "--dataset=generated",
            f"--root={tmp_path}",
            "--compression=raw,c40",
            f"--out={tmp_path}/out",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "put {compression} in --out" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
