"""Tables 1 and 2: they parse, hold the paper's numbers and ours, and mark missing cells."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import numpy as np
import pandas as pd
import pytest
from likelihood_helpers import write_likelihood_tree

from classifier import metrics
from classifier.config import DetectorConfig
from data_prep import face_records, files
from data_prep.files import write_json_atomically
from data_prep.methods import PAPER_METHODS as METHODS
from experiments.configs import load_config
from experiments.pipeline import detection, paper_results, report, tables
from experiments.pipeline import likelihoods as likelihood_extraction
from experiments.pipeline.workdir import Workdir


def _fake_metrics(workdir: str, protocol: str, method: str, accuracy: float, rng) -> None:
    labels = np.repeat([0, 1] * 10, 4)
    keys = np.repeat(np.arange(20), 4).astype(str)
    flip = rng.random(len(labels)) > accuracy
    scores = np.where(labels == 1, 0.9, 0.1)
    scores = np.where(flip, 1 - scores, scores)
    report, samples = metrics.evaluate(labels, scores, keys, num_samples=20, seed=0)
    write_json_atomically(
        os.path.join(workdir, "detection", protocol, method, "metrics.json"),
        {
            "test": report,
            "bootstrap_samples": {"test_frame_accuracy": samples["frame_accuracy"].tolist()},
        },
    )


@pytest.fixture
def workdir(tmp_path, rng) -> str:
    root = str(tmp_path)
    for protocol in ("known", "loo"):
        write_json_atomically(
            os.path.join(root, "detection", protocol, "config.json"), {"config": "smoke"}
        )
        for method in METHODS[:3]:  # NeuralTextures is missing
            _fake_metrics(root, protocol, method, 0.8, rng)
        write_json_atomically(
            os.path.join(root, "detection", protocol, "summary.json"),
            {"methods": {"NeuralTextures": {"status": "missing", "reason": "no NT faces"}}},
        )
    return root


def _read_csv(path: str) -> pd.DataFrame:
    """A table's plain CSV; the line naming the run is kept in run.json beside it."""
    folder, name = os.path.split(path)
    run = json.loads(pathlib.Path(folder, "run.json").read_text())
    assert run["reports"][name.removesuffix(".csv")]["header"].startswith("Dataset:")
    return pd.read_csv(path)


def test_tables_parse_and_hold_the_papers_numbers(workdir):
    paths = tables.make_tables(Workdir(workdir))
    assert len(paths) == 6 and all(os.path.exists(p) for p in paths)

    t1 = _read_csv(os.path.join(workdir, "results", "table1.csv"))
    t1 = t1.set_index("row")
    assert list(t1.columns[::3]) == ["DF", "F2F", "FS", "NT"]
    paper = t1.loc[paper_results.PAPER_METHOD]
    for column, value in paper_results.TABLE1_PAPER.items():
        assert float(paper[column]) == pytest.approx(value)
    xception = t1.loc["XceptionNet (FF++, quoted in paper)"]
    assert float(xception["F2F"]) == pytest.approx(99.61)
    ours = t1.loc["This run: frame accuracy (%)"]
    assert 50 < float(ours["DF"]) < 100
    assert float(ours["DF_ci_low"]) <= float(ours["DF"]) <= float(ours["DF_ci_high"])
    assert ours["NT"] == "missing"
    diff = t1.loc["Difference (this run - paper)"]
    assert float(diff["FS"]) == pytest.approx(float(ours["FS"]) - 99.11)

    t2 = _read_csv(os.path.join(workdir, "results", "table2.csv")).set_index("row")
    assert "Avg" in t2.columns
    assert float(t2.loc[paper_results.PAPER_METHOD, "Avg"]) == pytest.approx(95.73)
    assert float(t2.loc[paper_results.PAPER_METHOD, "DF"]) == pytest.approx(89.26)
    assert t2.loc["This run: frame accuracy (%)", "Avg"] == "missing"  # NT is missing

    md = (pathlib.Path(workdir) / "results" / "table1.md").read_text()
    assert "| Khodabakhsh & Busch (paper) | 99.30 | 98.25 | 99.11 | 98.46 |" in md
    assert "missing" in md and "NT missing: no NT faces" in md
    tex = (pathlib.Path(workdir) / "results" / "table2.tex").read_text()
    assert "\\begin{tabular}{lccccc}" in tex and "95.73" in tex and "\\&" in tex


def test_average_over_all_four_methods(workdir, rng):
    _fake_metrics(workdir, "loo", "NeuralTextures", 0.8, rng)
    tables.make_tables(Workdir(workdir))
    t2 = _read_csv(os.path.join(workdir, "results", "table2.csv")).set_index("row")
    ours = t2.loc["This run: frame accuracy (%)"]
    values = [float(ours[c]) for c in ("DF", "F2F", "FS", "NT")]
    assert float(ours["Avg"]) == pytest.approx(np.mean(values))
    assert float(ours["Avg_ci_low"]) <= float(ours["Avg"]) <= float(ours["Avg_ci_high"])
    assert float(t2.loc["Difference (this run - paper)", "Avg"]) == pytest.approx(
        np.mean(values) - 95.73
    )


def test_header_says_when_numbers_are_not_comparable(tmp_path):
    synthetic_root = tmp_path / "synthetic_ffpp"
    synthetic_root.mkdir()
    (synthetic_root / "synthetic.json").write_text("{}")
    info = {"dataset": "x", "generated": True, "compression": "raw", "config": "smoke"}
    assert "NOT comparable" in tables.header_line({**info, "smoke": True})
    real = {**info, "generated": False, "smoke": False, "config": "paper"}
    assert "NOT comparable" not in tables.header_line(real)
    write_json_atomically(
        str(tmp_path / "faces" / "manifest.json"),
        {"ffpp_root": str(synthetic_root), "settings": {"compression": "raw"}},
    )
    described = tables.describe_run(Workdir(str(tmp_path)))
    assert described["generated"] and described["compression"] == "raw"


@pytest.mark.slow
def test_method_missing_from_the_faces_is_marked_missing_in_the_tables(tmp_path, rng):
    # Faces of originals and Deepfakes only; NeuralTextures never made it to the faces.
    faces_dir = tmp_path / "faces"
    for split in ("train", "val", "test"):
        for source, video in (("original", "001"), ("Deepfakes", "001_002")):
            records = [
                face_records.serialize_face(
                    face_records.FaceExample(
                        image=rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
                        video=video,
                        frame=i,
                        method=source,
                        label=int(source != "original"),
                        split=split,
                        compression="raw",
                        box=(0, 0, 64, 64),
                    )
                )
                for i in range(3)
            ]
            path = str(faces_dir / split / source / f"{video}.tfrecord")
            files.write_shard_atomically(path, records)

    def stand_in(images):  # a fixed function of the pixels in place of the UBM
        maps = -images.astype(np.float32).mean(axis=-1) / 32.0
        return maps, maps.sum(axis=(1, 2))

    work = str(tmp_path / "work")
    tasks = likelihood_extraction.plan_shards(str(faces_dir), f"{work}/likelihoods")
    likelihood_extraction.extract_all(tasks, stand_in)
    config = dataclasses.replace(
        load_config("smoke"), detector=DetectorConfig(epochs=1, batch_size=8, bootstrap_samples=10)
    )
    summary = detection.run_protocol(
        config, Workdir(work), "known", methods=["Deepfakes", "NeuralTextures"]
    )
    assert summary["methods"]["NeuralTextures"]["status"] == "missing"
    tables.make_tables(Workdir(work))
    t1 = _read_csv(f"{work}/results/table1.csv").set_index("row")
    ours = t1.loc["This run: frame accuracy (%)"]
    assert ours["NT"] == "missing" and ours["F2F"] == "missing"
    assert 0.0 <= float(ours["DF"]) <= 100.0
    t2 = _read_csv(f"{work}/results/table2.csv").set_index("row")
    assert (t2.loc["This run: frame accuracy (%)"] == "missing").sum() == 5  # 4 + Avg


def test_no_detection_results_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run run_detection"):
        tables.make_tables(Workdir(str(tmp_path)))


_BASELINE_ROWS = tuple(
    tables.baseline_label(score, label)
    for score in ("loglik", "complexity")
    for _, label in tables.BASELINE_METRICS
)


def test_baseline_rows_parse_in_every_format(workdir):
    write_likelihood_tree(os.path.join(workdir, "likelihoods"), split_videos={"val": 2, "test": 2})
    tables.make_tables(Workdir(workdir))
    results = pathlib.Path(workdir) / "results"
    for name, columns in (("table1", ["DF", "F2F", "FS", "NT"]), ("table2", None)):
        frame = _read_csv(str(results / f"{name}.csv")).set_index("row")
        assert list(frame.index[-4:]) == list(_BASELINE_ROWS)  # after all our rows
        for column in columns or ["DF", "F2F", "FS", "NT", "Avg"]:
            for row in _BASELINE_ROWS:
                assert 0.0 <= float(frame.loc[row, column]) <= 100.0
        auc = frame.loc[_BASELINE_ROWS[0]]
        assert all(float(auc[c]) > 50.0 for c in ("DF", "F2F", "FS", "NT"))

        md = (results / f"{name}.md").read_text().splitlines()
        n_columns = len(md[2].strip("|").split("|"))
        for row in _BASELINE_ROWS:
            (line,) = [m for m in md if m.startswith(f"| {row} |")]
            assert len(line.strip().strip("|").split("|")) == n_columns
        assert any("Baseline rows: no LeNet" in m and "val split" in m for m in md)

        tex = (results / f"{name}.tex").read_text()
        n_tex = tex.split(r"\begin{tabular}{")[1].split("}")[0].count("c") + 1
        for row in _BASELINE_ROWS:
            (line,) = [t for t in tex.splitlines() if t.startswith(report.escape_tex(row) + " &")]
            assert line.endswith(r"\\") and len(line.split(" & ")) == n_tex


def test_without_likelihoods_the_baseline_rows_are_left_out_with_a_note(workdir):
    tables.make_tables(Workdir(workdir))
    t1 = _read_csv(os.path.join(workdir, "results", "table1.csv")).set_index("row")
    assert not any(r.startswith("Baseline:") for r in t1.index)
    md = (pathlib.Path(workdir) / "results" / "table2.md").read_text()
    assert "Baseline rows (the image log-likelihood as a detector) left out" in md
