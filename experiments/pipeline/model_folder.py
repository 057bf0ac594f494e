"""The model folder: one self-contained directory holding everything detection needs.

`export_model` writes it from a work directory; `detector.Detector.load` reads it.
Nothing in it refers to the work directory or to training checkpoints:

    MODEL_DIR/
      ubm.weights.h5        the PixelCNN++ UBM's averaged (Polyak/EMA) weights only
      ubm_config.json       {"ubm": UBMConfig fields}: rebuilds the network
      detector.keras        the LeNet detector (map standardisation inside)
      detector_config.json  the detector's training settings, standardisation, epoch
      face_settings.json    FaceSettings.to_json(): detection mode, crop scale and size
      decision.json         {"threshold", "rule"}: fake = frame/video score >= threshold
      manifest.json         format and project versions, libraries, what it was trained
                            on, val and test metrics, sha256 of every other file

The folder is written as `MODEL_DIR.tmp` and renamed when complete, so a folder named
MODEL_DIR is never half-written. `verify` checks that every file is present and
unchanged (sha256) and that the format and the project's major version are ones this
code reads. `export_model` writes one from a work directory's UBM and detector.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
from collections.abc import Callable
from typing import Any

from classifier import metrics as metrics_lib
from classifier.config import ALL, DETECTION_PROTOCOLS
from data_prep.datasets import generated
from data_prep.files import read_json, write_json_atomically
from experiments.configs.base import ExperimentConfig
from experiments.pipeline.detection import METRICS_FILE, MODEL_FILE
from experiments.pipeline.workdir import CONFIG_FILE, Workdir
from pixelcnn_pp import likelihood

# Raise when the layout or meaning of a file changes; `verify` refuses other versions.
FORMAT_VERSION = 1
PROJECT = "ncdm-deepfake"

MANIFEST_FILE = "manifest.json"
UBM_WEIGHTS_FILE = "ubm.weights.h5"
UBM_CONFIG_FILE = "ubm_config.json"
DETECTOR_FILE = "detector.keras"
DETECTOR_CONFIG_FILE = "detector_config.json"
FACE_SETTINGS_FILE = "face_settings.json"
DECISION_FILE = "decision.json"
# Every file the manifest lists, with its checksum.
MODEL_FILES: tuple[str, ...] = (
    UBM_WEIGHTS_FILE,
    UBM_CONFIG_FILE,
    DETECTOR_FILE,
    DETECTOR_CONFIG_FILE,
    FACE_SETTINGS_FILE,
    DECISION_FILE,
)
_TMP_SUFFIX = ".tmp"
_OLD_SUFFIX = ".old"


class ModelFolderError(ValueError):
    """A model folder that cannot be used: missing, incomplete, tampered or incompatible."""


def project_version() -> str:
    """The installed version of the project (setup.py's), or "unknown" if not installed."""
    try:
        return importlib.metadata.version(PROJECT)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def library_versions() -> dict[str, str]:
    """Versions of the libraries the model's behaviour depends on."""
    versions = {}
    for name, dist in (
        ("tensorflow", "tensorflow"),
        ("keras", "keras"),
        ("numpy", "numpy"),
        ("dlib", "dlib-bin"),
        ("opencv", "opencv-python-headless"),
    ):
        try:
            versions[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def sha256(path: str) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _major(version: str) -> str:
    return version.split(".")[0]


def write_model_folder(
    model_dir: str,
    fill: Callable[[str], None],
    manifest: dict[str, Any],
    overwrite: bool = False,
) -> dict[str, Any]:
    """Writes a model folder atomically: `fill(tmp_dir)` writes MODEL_FILES into it.

    Args:
      model_dir: the folder to create.
      fill: writes every name of MODEL_FILES into the folder it is given.
      manifest: what the model was trained on and its metrics; the format version,
        project and library versions and the checksums are added here.
      overwrite: replace an existing non-empty `model_dir` (only once the new one is
        complete).

    Returns:
      The manifest written.

    Raises:
      ModelFolderError: `model_dir` exists and is not empty (without `overwrite`), or
        `fill` left a file out.
    """
    model_dir = os.path.normpath(model_dir)
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise ModelFolderError(f"{model_dir!r} is a file, not a folder: choose another --out.")
    if os.path.isdir(model_dir) and os.listdir(model_dir) and not overwrite:
        raise ModelFolderError(
            f"{model_dir!r} exists and is not empty: choose another --out, or pass "
            "--overwrite to replace it."
        )
    tmp = model_dir + _TMP_SUFFIX
    if os.path.exists(tmp):  # left by an interrupted export
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    try:
        fill(tmp)
        missing = [name for name in MODEL_FILES if not os.path.isfile(os.path.join(tmp, name))]
        if missing:
            raise ModelFolderError(f"The export wrote no {', '.join(missing)} (a bug).")
        manifest = {
            "format_version": FORMAT_VERSION,
            "project": PROJECT,
            "project_version": project_version(),
            "libraries": library_versions(),
            **manifest,
            "files": {name: sha256(os.path.join(tmp, name)) for name in MODEL_FILES},
        }
        write_json_atomically(os.path.join(tmp, MANIFEST_FILE), manifest)
        old = model_dir + _OLD_SUFFIX
        if os.path.exists(model_dir):
            if os.path.exists(old):
                shutil.rmtree(old)
            os.replace(model_dir, old)
        os.replace(tmp, model_dir)
        if os.path.exists(old):
            shutil.rmtree(old)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    return manifest


def read_json_file(model_dir: str, name: str) -> Any:
    """A JSON file of a (verified) model folder."""
    with open(os.path.join(model_dir, name)) as f:
        return json.load(f)


def verify(model_dir: str) -> dict[str, Any]:
    """Checks a model folder and returns its manifest.

    Raises:
      ModelFolderError: the folder or its manifest is missing; a listed file is missing
        (named); a file's sha256 differs from the manifest's (named); the format
        version is not FORMAT_VERSION, or the project's major version differs (both
        versions said); each with what to do.
    """
    if not os.path.isdir(model_dir):
        raise ModelFolderError(
            f"Model folder {model_dir!r} does not exist: pass a folder written by "
            "`python -m experiments.export_model`."
        )
    manifest_path = os.path.join(model_dir, MANIFEST_FILE)
    if not os.path.isfile(manifest_path):
        raise ModelFolderError(
            f"{model_dir!r} is incomplete: it has no {MANIFEST_FILE}. It is not a model "
            "folder, or its export was interrupted: export it again (export_model)."
        )
    try:
        manifest = read_json_file(model_dir, MANIFEST_FILE)
    except (OSError, ValueError) as err:
        raise ModelFolderError(
            f"{manifest_path!r} cannot be read ({err}): export the model again."
        ) from None
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        age = (
            "newer"
            if isinstance(version, int) and version > FORMAT_VERSION
            else "older (or unknown)"
        )
        raise ModelFolderError(
            f"{model_dir!r} has model-folder format version {version!r}, {age} than the "
            f"version {FORMAT_VERSION} this code reads: install the {PROJECT} version that "
            f"exported it ({manifest.get('project_version', 'unknown')}), or export the "
            "model again with this one."
        )
    saved, ours = str(manifest.get("project_version", "unknown")), project_version()
    if "unknown" not in (saved, ours) and _major(saved) != _major(ours):
        raise ModelFolderError(
            f"{model_dir!r} was exported by {PROJECT} {saved}, a different major version "
            f"than the installed {ours}: install {PROJECT} {_major(saved)}.x, or export the "
            "model again with this version."
        )
    listed = manifest.get("files", {})
    for name in MODEL_FILES:
        path = os.path.join(model_dir, name)
        if not os.path.isfile(path):
            raise ModelFolderError(
                f"{model_dir!r} is incomplete: {name} is missing. Copy the whole folder "
                "again, or export the model again (export_model)."
            )
        if name not in listed:
            raise ModelFolderError(
                f"{model_dir!r}: {MANIFEST_FILE} lists no checksum for {name}: export the "
                "model again."
            )
        if sha256(path) != listed[name]:
            raise ModelFolderError(
                f"{model_dir!r}: {name} has been changed since export (its sha256 differs "
                f"from {MANIFEST_FILE}'s): copy the folder again from its source, or export "
                "the model again."
            )
    return manifest


def _face_settings_json(workdir: Workdir, config: ExperimentConfig | None) -> dict[str, Any]:
    saved = read_json(os.path.join(workdir.faces, CONFIG_FILE))
    if saved:  # what the training crops were actually made with
        return {k: v for k, v in saved.items() if k != "methods"}
    if config is None:
        raise ModelFolderError(
            f"No {CONFIG_FILE} in {workdir.faces!r} to take the face-crop settings from: "
            "pass --config (the configuration the faces were prepared with)."
        )
    return config.faces.to_json()


def _dataset(workdir: Workdir) -> dict[str, Any]:
    """Which dataset and compression the faces came from (faces/manifest.json, config.json)."""
    manifest = read_json(os.path.join(workdir.faces, MANIFEST_FILE)) or {}
    settings = read_json(os.path.join(workdir.faces, CONFIG_FILE)) or {}
    root = manifest.get("ffpp_root")
    if root is None:
        name = "unknown"
    elif os.path.exists(os.path.join(root, generated.MARKER)):
        name = "generated"
    else:
        name = "ffpp"
    return {"dataset": name, "compression": settings.get("compression", "unknown")}


def export_model(
    workdir: Workdir,
    model_dir: str,
    protocol: str = ALL,
    method: str | None = None,
    config: ExperimentConfig | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Writes the model folder of one trained detector of a work directory.

    The UBM is restored from its latest checkpoint (`likelihood.load_ubm`: the
    averaged weights) and saved as weights only, no optimizer state; the detector's
    model.keras is copied. The threshold is 0.5, the threshold of the frame accuracy
    in metrics.json and the tables (`classifier.metrics.THRESHOLD`), so the exported
    model decides as the evaluated one did.

    Args:
      workdir: a work directory with ubm/ and detection/<protocol>/<method>/ done.
      model_dir: the folder to write.
      protocol: "all" (default: the detector trained on every method), "known", "loo".
      method: the detector of that protocol; default "all" for protocol all.
      config: used only where faces/config.json is missing (face settings).
      overwrite: replace an existing non-empty model_dir.

    Returns:
      The manifest written.

    Raises:
      ModelFolderError: a missing stage output, a bad protocol/method, or an existing
        model_dir, each with what to do.
    """
    if protocol not in DETECTION_PROTOCOLS:
        raise ModelFolderError(
            f"Unknown protocol {protocol!r}: choose one of {', '.join(DETECTION_PROTOCOLS)}."
        )
    if method is None:
        if protocol != ALL:
            raise ModelFolderError(
                f"Protocol {protocol!r} has one detector per method: name --method."
            )
        method = ALL
    source = os.path.join(workdir.protocol(protocol), method)
    metrics = read_json(os.path.join(source, METRICS_FILE))
    if metrics is None:
        raise ModelFolderError(
            f"No finished detector in {source!r} (no {METRICS_FILE}): run "
            f"`run_detection --protocol={protocol}` first, or check --workdir and --method."
        )
    face_settings = _face_settings_json(workdir, config)
    try:
        ubm = likelihood.load_ubm(workdir.ubm)
    except FileNotFoundError as err:
        raise ModelFolderError(str(err)) from None
    ubm_config = read_json(os.path.join(workdir.ubm, CONFIG_FILE))["ubm"]
    threshold = float(metrics_lib.THRESHOLD)
    training = metrics["training"]

    def fill(tmp: str) -> None:
        ubm.save_weights(os.path.join(tmp, UBM_WEIGHTS_FILE))
        write_json_atomically(os.path.join(tmp, UBM_CONFIG_FILE), {"ubm": ubm_config})
        shutil.copyfile(os.path.join(source, MODEL_FILE), os.path.join(tmp, DETECTOR_FILE))
        write_json_atomically(
            os.path.join(tmp, DETECTOR_CONFIG_FILE),
            {
                key: training.get(key)
                for key in (
                    "detector_config",
                    "standardization",
                    "balance",
                    "class_weights",
                    "selection",
                    "best_epoch",
                )
            },
        )
        write_json_atomically(os.path.join(tmp, FACE_SETTINGS_FILE), face_settings)
        write_json_atomically(
            os.path.join(tmp, DECISION_FILE),
            {
                "threshold": threshold,
                "rule": "fake when the score (a frame's fake probability, or a video's mean "
                "over frames) >= threshold; 0.5 is the threshold of the frame accuracy "
                "reported in the metrics (the paper's), not tuned on val",
            },
        )

    manifest = {
        "trained_on": {
            "protocol": protocol,
            "method": method,
            "sources": training.get("sources"),
            "composition": training.get("composition"),
            **_dataset(workdir),
            "ubm_checkpoint": os.path.basename(ubm.ubm_checkpoint),
        },
        "metrics": {"val": metrics.get("val"), "test": metrics.get("test")},
        "threshold": threshold,
    }
    return write_model_folder(model_dir, fill, manifest, overwrite=overwrite)
