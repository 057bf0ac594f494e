"""The model folder: export writes it atomically and refuses to replace one; a missing,
changed or incompatible file is refused on load, each with a message that says what to
do; the protocol `all` trains one detector on every method.

The work directory is tiny and built here: an untrained small UBM saved as train_ubm
saves it, generated likelihood maps, and a LeNet trained one epoch on them.
"""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
from conftest import copy_workdir
from likelihood_helpers import write_likelihood_tree
from ubm_helpers import write_tiny_ubm

from classifier.config import ALL
from data_prep import files
from data_prep.face_settings import FaceSettings
from data_prep.methods import ORIGINAL, PAPER_METHODS
from experiments.configs import load_config
from experiments.pipeline import detection, model_folder
from experiments.pipeline.detector import Detector, ModelFolderError
from experiments.pipeline.workdir import CONFIG_FILE, Workdir

SPLIT_VIDEOS = {"train": 2, "val": 2, "test": 2}


def build_workdir(root: str) -> Workdir:
    """faces/config.json, ubm/, likelihoods/ and detection/all/all/ of a tiny run."""
    workdir = Workdir(root)
    write_tiny_ubm(workdir.ubm)
    files.write_json_atomically(
        os.path.join(workdir.faces, CONFIG_FILE), FaceSettings(face_finder="exact").to_json()
    )
    write_likelihood_tree(workdir.likelihoods, split_videos=SPLIT_VIDEOS, frames=2)
    config = load_config("smoke")
    config = dataclasses.replace(
        config,
        detector=dataclasses.replace(config.detector, epochs=1, bootstrap_samples=10),
    )
    detection.run_protocol(config, workdir, ALL)
    return workdir


@pytest.fixture(scope="module")
def workdir(tiny_workdir, tmp_path_factory) -> Workdir:
    return copy_workdir(tiny_workdir, str(tmp_path_factory.mktemp("work")))


@pytest.fixture(scope="module")
def exported(workdir, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("exports") / "model")
    model_folder.export_model(workdir, out)
    return out


def _copy(exported: str, tmp_path) -> str:
    target = str(tmp_path / "copy")
    os.makedirs(target)
    for name in os.listdir(exported):
        with open(os.path.join(exported, name), "rb") as src:
            data = src.read()
        with open(os.path.join(target, name), "wb") as dst:
            dst.write(data)
    return target


@pytest.mark.slow
def test_protocol_all_trains_on_every_method(workdir):
    root = workdir.protocol(ALL)
    assert os.listdir(root) and os.path.isdir(os.path.join(root, ALL))
    with open(os.path.join(root, ALL, detection.METRICS_FILE)) as f:
        report = json.load(f)
    every = {ORIGINAL, *PAPER_METHODS}
    for split in ("train", "val", "test"):
        assert set(report["training"]["sources"][split]) == every
        assert set(report["training"]["composition"][split]) == every
    assert report["protocol"] == ALL and report["method"] == ALL
    with open(os.path.join(root, detection.SUMMARY_FILE)) as f:
        assert set(json.load(f)["methods"]) == {ALL}
    # Not a table of the paper: the tables' protocols stay known and loo.
    assert ALL not in detection.protocols.PROTOCOLS


@pytest.mark.slow
def test_export_writes_every_file_with_its_checksum(exported):
    manifest = model_folder.verify(exported)
    assert set(os.listdir(exported)) == {*model_folder.MODEL_FILES, model_folder.MANIFEST_FILE}
    assert set(manifest["files"]) == set(model_folder.MODEL_FILES)
    assert manifest["format_version"] == model_folder.FORMAT_VERSION
    assert manifest["project_version"] == model_folder.project_version()
    assert set(manifest["libraries"]) == {"tensorflow", "keras", "numpy", "dlib", "opencv"}
    assert manifest["trained_on"]["protocol"] == ALL
    assert set(manifest["trained_on"]["composition"]["train"]) == {ORIGINAL, *PAPER_METHODS}
    assert "frame_accuracy" in manifest["metrics"]["test"]
    assert "frame_accuracy" in manifest["metrics"]["val"]
    assert manifest["threshold"] == 0.5
    with open(os.path.join(exported, model_folder.FACE_SETTINGS_FILE)) as f:
        assert json.load(f)["face_finder"] == "exact"
    # Weights only: no optimizer state, no training checkpoint.
    assert not any("ckpt" in name for name in os.listdir(exported))


@pytest.mark.slow
def test_export_refuses_an_existing_folder_unless_overwrite(workdir, exported, tmp_path):
    with pytest.raises(ModelFolderError, match="exists and is not empty.*--overwrite"):
        model_folder.export_model(workdir, exported)
    out = str(tmp_path / "model")
    os.makedirs(out)
    with open(os.path.join(out, "keep.txt"), "w") as f:
        f.write("x")
    model_folder.export_model(workdir, out, overwrite=True)
    assert not os.path.exists(os.path.join(out, "keep.txt"))
    model_folder.verify(out)
    assert not os.path.exists(out + ".tmp") and not os.path.exists(out + ".old")


@pytest.mark.slow
def test_export_needs_a_finished_detector(workdir, tmp_path):
    with pytest.raises(ModelFolderError, match="run_detection --protocol=known"):
        model_folder.export_model(workdir, str(tmp_path / "m"), "known", "Deepfakes")
    with pytest.raises(ModelFolderError, match="name --method"):
        model_folder.export_model(workdir, str(tmp_path / "m"), "loo")
    assert not os.path.exists(tmp_path / "m")


@pytest.mark.slow
@pytest.mark.parametrize("name", model_folder.MODEL_FILES)
def test_a_missing_file_is_named(exported, tmp_path, name):
    folder = _copy(exported, tmp_path)
    os.remove(os.path.join(folder, name))
    with pytest.raises(ModelFolderError, match=f"incomplete: {name} is missing"):
        Detector.load(folder)


@pytest.mark.slow
def test_a_missing_manifest_or_folder_says_what_to_do(exported, tmp_path):
    folder = _copy(exported, tmp_path)
    os.remove(os.path.join(folder, model_folder.MANIFEST_FILE))
    with pytest.raises(ModelFolderError, match="no manifest.json.*export it again"):
        Detector.load(folder)
    with pytest.raises(ModelFolderError, match="does not exist.*export_model"):
        Detector.load(str(tmp_path / "nothing"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [model_folder.UBM_WEIGHTS_FILE, model_folder.DETECTOR_FILE, model_folder.DECISION_FILE]
)
def test_a_changed_file_is_named(exported, tmp_path, name):
    folder = _copy(exported, tmp_path)
    with open(os.path.join(folder, name), "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelFolderError, match=f"{name} has been changed since export"):
        Detector.load(folder)


def _edit_manifest(folder: str, **changes) -> None:
    path = os.path.join(folder, model_folder.MANIFEST_FILE)
    with open(path) as f:
        manifest = json.load(f)
    manifest.update(changes)
    with open(path, "w") as f:
        json.dump(manifest, f)


@pytest.mark.slow
@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"format_version": model_folder.FORMAT_VERSION + 1},
            "version 2, newer than the version 1",
        ),
        ({"format_version": 0}, "version 0, older .* than the version 1"),
        ({"project_version": "99.0.0"}, "exported by ncdm-deepfake 99.0.0, a different major"),
    ],
)
def test_an_incompatible_folder_says_which_version(exported, tmp_path, changes, message):
    folder = _copy(exported, tmp_path)
    _edit_manifest(folder, **changes)
    with pytest.raises(ModelFolderError, match=message):
        Detector.load(folder)
