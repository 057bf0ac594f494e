"""Methods come from the data: a fifth method in the likelihood maps (FaceShifter) gets
its own leave-one-out run, is in every other method's training pool, and has its own
column in the tables, with `n/a` where the paper has no number."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import pandas as pd
import pytest
from likelihood_helpers import write_likelihood_tree

from classifier import data as data_lib
from classifier.config import DetectorConfig
from data_prep.methods import ORIGINAL, PAPER_METHODS
from experiments.configs import load_config
from experiments.pipeline import detection, paper_results, tables
from experiments.pipeline.workdir import Workdir

FIVE = (*PAPER_METHODS, "FaceShifter")


def _tree(workdir: Workdir) -> None:
    write_likelihood_tree(
        workdir.likelihoods,
        sources=(ORIGINAL, "FaceShifter", *PAPER_METHODS),
        split_videos={"train": 2, "val": 1, "test": 1},
        frames=2,
    )


def test_methods_are_found_in_the_likelihood_folders_in_table_order(tmp_path):
    workdir = Workdir(str(tmp_path))
    _tree(workdir)
    assert data_lib.find_methods(workdir.likelihoods) == FIVE
    assert tables.table_methods(workdir) == FIVE


@pytest.mark.slow
def test_leave_one_out_runs_over_every_method_found_and_the_tables_show_it(tmp_path):
    workdir = Workdir(str(tmp_path))
    _tree(workdir)
    config = dataclasses.replace(
        load_config("smoke"), detector=DetectorConfig(epochs=1, batch_size=16, bootstrap_samples=10)
    )
    summary = detection.run_protocol(config, workdir, "loo")
    assert list(summary["methods"]) == list(FIVE)
    assert all(entry["status"] == "done" for entry in summary["methods"].values())
    with open(f"{workdir.protocol('loo')}/FaceShifter/metrics.json") as f:
        report = json.load(f)
    assert set(report["training"]["composition"]["train"]) == {ORIGINAL, *PAPER_METHODS}
    with open(f"{workdir.protocol('loo')}/Deepfakes/metrics.json") as f:
        report = json.load(f)
    assert "FaceShifter" in report["training"]["composition"]["train"]

    tables.make_tables(workdir)
    t2 = pd.read_csv(f"{workdir.results}/table2.csv", keep_default_na=False).set_index("row")
    assert list(t2.columns[::3]) == ["DF", "F2F", "FS", "NT", "FSh", "Avg"]
    paper = t2.loc[paper_results.PAPER_METHOD]
    assert float(paper["DF"]) == pytest.approx(89.26)
    assert paper["FSh"] == "n/a" and paper["Avg"] == "n/a"  # the paper studied four
    ours = t2.loc["This run: frame accuracy (%)"]
    assert 0.0 <= float(ours["FSh"]) <= 100.0 and 0.0 <= float(ours["Avg"]) <= 100.0
    assert t2.loc["Difference (this run - paper)", "FSh"] == "n/a"
    md = pathlib.Path(workdir.results, "table2.md").read_text()
    assert "other four methods" in md and "no number for FSh" in md
    t1 = pd.read_csv(f"{workdir.results}/table1.csv", keep_default_na=False).set_index("row")
    assert t1.loc["This run: frame accuracy (%)", "FSh"] == "missing"  # known not run
    assert t1.loc["XceptionNet (FF++, quoted in paper)", "FSh"] == "n/a"
