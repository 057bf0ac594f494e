"""The method end to end on real deepfakes: DFDC face crops -> UBM -> maps -> detectors.

A fixed subset of ../shared/data/dfdc_faces (reals of every split with the fakes made
from them) goes through the face stage as crops taken as given, one point of the UBM
scaling study (a tiny UBM, its maps, the LeNets on maps, pixels and both) and the
tables: the pixel rows are there, and the leave-one-out table says why it is empty
(the fakes name no method).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import os
import shutil

import pytest

from classifier.config import INPUT_KINDS
from classifier.inputs import LABELS
from data_prep.datasets import open_dataset
from data_prep.datasets.crops import split_of
from data_prep.face_settings import GIVEN
from data_prep.face_stage import prepare_faces
from experiments.configs import load_config
from experiments.pipeline import detection, tables, ubm_scaling
from experiments.pipeline import figures as figures_lib
from experiments.pipeline.workdir import Workdir

pytestmark = pytest.mark.slow
REALS_PER_SPLIT = {"train": 10, "val": 5, "test": 5}


@pytest.fixture(scope="module")
def crops_root(tmp_path_factory, shared_data) -> str:
    """A face dump of reals of each split (seed 0) and every fake made from them."""
    source = shared_data / "dfdc_faces"
    with open(source / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    fakes_of = collections.defaultdict(list)
    for row in rows:
        if row["label"] == "FAKE":
            fakes_of[row["original"]].append(row)
    wanted = dict(REALS_PER_SPLIT)
    chosen = []
    for row in rows:
        split = split_of(row["videoname"][:-4], 0)
        if row["label"] == "REAL" and fakes_of[row["videoname"]] and wanted[split] > 0:
            wanted[split] -= 1
            chosen += [row, *fakes_of[row["videoname"]]]
    root = tmp_path_factory.mktemp("dfdc") / "dfdc_subset"
    (root / "faces_224").mkdir(parents=True)
    for row in chosen:
        name = row["videoname"].replace(".mp4", ".jpg")
        shutil.copy(source / "faces_224" / name, root / "faces_224" / name)
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(chosen)
    return str(root)


def test_one_scaling_point_and_the_tables_on_real_crops(crops_root, tmp_path):
    faces = tmp_path / "faces_run" / "faces"
    settings = dataclasses.replace(load_config("cpu").faces, face_finder=GIVEN, methods=None)
    manifest = prepare_faces(open_dataset("crops", crops_root), str(faces), settings, workers=1)
    assert manifest["failed_videos"] == 0

    base = load_config("cpu")
    base = dataclasses.replace(
        base,
        ubm=dataclasses.replace(base.ubm, nr_filters=8, batch_size=4, init_batch_size=4),
        detector=dataclasses.replace(base.detector, epochs=2, bootstrap_samples=20),
    )
    point = ubm_scaling.ScalingPoint.parse("r1f8s3")
    study = tmp_path / "study"
    figures = ubm_scaling.run_point(base, point, str(faces), str(study), {}, INPUT_KINDS)
    assert figures["point"] == "r1f8s3" and figures["steps"] == 3
    assert figures["training_flops"] == ubm_scaling.training_flops(
        ubm_scaling.point_config(base, point)
    )
    assert figures["ubm_val_bits_per_dim"] > 0
    for kind in INPUT_KINDS:
        result = figures[f"{kind}/fake"]
        assert 0.0 <= result["test_frame_auc"] <= 1.0
        low, high = result["test_frame_auc_ci"]
        assert low <= result["test_frame_auc"] <= high
        assert "test_frame_accuracy_val_threshold" in result

    workdir = Workdir(ubm_scaling.point_dir(str(study), point))
    # The pixel detectors read 3 channels (RGB), standardised per channel.
    rgb = json.loads(
        (
            tmp_path
            / "study"
            / point.name
            / "detection"
            / "known_pixels_rgb"
            / "fake"
            / detection.METRICS_FILE
        ).read_text()
    )
    assert rgb["inputs"] == "pixels_rgb" and len(rgb["training"]["standardization"]["mean"]) == 3
    detection.run_protocol(
        dataclasses.replace(base, detector=dataclasses.replace(base.detector, inputs=("maps",))),
        workdir,
        "loo",
    )
    tables.make_tables(workdir)
    with open(os.path.join(workdir.results, "table1.md")) as f:
        table1 = f.read()
    for label in ("LeNet on pixels (grey)", "LeNet on pixels (RGB)", "LeNet on maps + pixels"):
        assert label in table1
    assert "| DF " not in table1  # a crop dataset shows its own methods only
    with open(os.path.join(workdir.results, "table2.md")) as f:
        assert "Leave-one-out not run: leave-one-out needs two methods or more" in f.read()
    curves = figures_lib.known_roc_curves(workdir, ("fake",))
    assert set(curves["fake"]) == {*(LABELS[k] for k in INPUT_KINDS), "-image log-likelihood"}
    paths = figures_lib.make_figures(workdir)
    assert paths[-1].endswith(figures_lib.ROC) and os.path.getsize(paths[-1]) > 0
