"""The work-directory layout: every folder and file one stage hands to the next.

This module is the only place that spells the stage folder names; every stage and
binary asks it for paths. A work directory looks like

    WORKDIR/
      synthetic_ffpp/      the generated dataset (when no dataset root is given)
      faces/               prepare_faces: <split>/<source>/<video>.tfrecord, manifest.json
      ubm/                 train_ubm: config.json, checkpoints/, tensorboard/, metrics.json
      likelihoods/         extract_likelihoods: <split>/<source>/<video>.tfrecord
      background_ubm/      train_ubm --background: a PixelCNN++ of perturbed pristine crops
      background_likelihoods/  extract_likelihoods --background: its maps (val, test)
      detection/<protocol>/<method>/   run_detection: model.keras, predictions.csv, ...
      detection/<protocol>_<inputs>/<method>/  the same LeNet on pixels (baselines)
      results/             make_tables, make_figures: tables, figures, run.json
      model/               export_model (in make reproduce): the self-contained model folder
      detect/              detect (in make reproduce): report.html, report.json, frames/, ...
      evaluation/<name>/   evaluate: one model on one dataset split (faces/, predictions.csv,
                           metrics.json); make_cross_table reads them into results/cross.*
      evaluation_data/     datasets made only to be evaluated on (the smoke run's folder set)
      config.json          the configuration, resolved (name and overrides), written by the
                           first stage; every later stage reads it (experiments.cli)
      commands.jsonl       every stage's command line
"""

from __future__ import annotations

import dataclasses
import os

from classifier.config import MAPS as MAP_INPUTS

GENERATED_DATASET = "synthetic_ffpp"
FACES = "faces"
UBM = "ubm"
BACKGROUND_UBM = "background_ubm"
BACKGROUND_LIKELIHOODS = "background_likelihoods"
LIKELIHOODS = "likelihoods"
DETECTION = "detection"
RESULTS = "results"
MODEL = "model"
DETECT = "detect"
EVALUATION = "evaluation"
EVALUATION_DATA = "evaluation_data"
COMMANDS_FILE = "commands.jsonl"
CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
RUN_FILE = "run.json"
SHARD_SUFFIX = ".tfrecord"


@dataclasses.dataclass(frozen=True)
class Workdir:
    """Paths of one work directory (`root`); nothing is created by asking."""

    root: str

    @property
    def generated_dataset(self) -> str:
        return os.path.join(self.root, GENERATED_DATASET)

    @property
    def faces(self) -> str:
        return os.path.join(self.root, FACES)

    @property
    def ubm(self) -> str:
        return os.path.join(self.root, UBM)

    @property
    def likelihoods(self) -> str:
        return os.path.join(self.root, LIKELIHOODS)

    @property
    def background_ubm(self) -> str:
        """The background PixelCNN++ (`train_ubm --background`)."""
        return os.path.join(self.root, BACKGROUND_UBM)

    @property
    def background_likelihoods(self) -> str:
        """Its maps of the val and test crops (`extract_likelihoods --background`)."""
        return os.path.join(self.root, BACKGROUND_LIKELIHOODS)

    @property
    def detection(self) -> str:
        return os.path.join(self.root, DETECTION)

    @property
    def results(self) -> str:
        return os.path.join(self.root, RESULTS)

    @property
    def model(self) -> str:
        """The default model folder `export_model` writes (one self-contained folder)."""
        return os.path.join(self.root, MODEL)

    @property
    def detect(self) -> str:
        """The report `make reproduce` has detect write on a few generated test videos."""
        return os.path.join(self.root, DETECT)

    def evaluation(self, name: str = "") -> str:
        """`evaluation/<name>`: one evaluation of a model on a dataset split ("": all)."""
        return (
            os.path.join(self.root, EVALUATION, name)
            if name
            else os.path.join(self.root, EVALUATION)
        )

    @property
    def evaluation_data(self) -> str:
        """Datasets generated only to be evaluated on (never trained on)."""
        return os.path.join(self.root, EVALUATION_DATA)

    @property
    def config(self) -> str:
        """The run's resolved configuration, written once by the first stage."""
        return os.path.join(self.root, CONFIG_FILE)

    @property
    def commands(self) -> str:
        return os.path.join(self.root, COMMANDS_FILE)

    @property
    def run_json(self) -> str:
        return os.path.join(self.results, RUN_FILE)

    def protocol(self, protocol: str, inputs: str = MAP_INPUTS) -> str:
        """`detection/<protocol>` (the method: LeNets on maps) or, for a baseline's
        inputs, `detection/<protocol>_<inputs>`: one detector folder per method under it."""
        name = protocol if inputs == MAP_INPUTS else f"{protocol}_{inputs}"
        return os.path.join(self.detection, name)

    def face_shards(self, split: str, source: str = "*") -> str:
        """Glob of the face shards of one split and source (`original`, a method, `*`)."""
        return os.path.join(self.faces, split, source, "*" + SHARD_SUFFIX)
