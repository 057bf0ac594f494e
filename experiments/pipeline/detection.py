"""One protocol of the paper's experiments (Table 1 or Table 2), method by method.

For each method X (Khodabakhsh & Busch, BIOSIG 2020, Sec. 4): build the protocol's
training, selection and test sets (`classifier.protocols`), train the LeNet-style
detector (`classifier.training`), score val and test, and write to
`WORKDIR/detection/<protocol>/<X>/`:
- `model.keras`: the selected model (map standardisation included);
- `predictions.csv`: split, method, video, frame, label, score (fake probability) for
  every val and test frame;
- `metrics.json` (written last, atomically): test and val metrics with bootstrap 95%
  intervals, counts, the training set composition, class weights, the chosen epoch.
A method whose metrics.json exists is skipped, so a re-run continues. A method whose
data is missing is logged and recorded as missing in `summary.json`; the others go on.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from absl import logging

from classifier import data as data_lib
from classifier import metrics as metrics_lib
from classifier import protocols, training
from classifier.config import DetectorConfig
from data_prep.config import METHODS
from data_prep.face_records import ORIGINAL
from data_prep.files import read_json, write_json_atomically

DETECTION_SUBDIR = "detection"
MODEL_FILE = "model.keras"
PREDICTIONS_FILE = "predictions.csv"
METRICS_FILE = "metrics.json"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.json"
PREDICTION_COLUMNS = ("split", "method", "video", "frame", "label", "score")


def protocol_dir(workdir: str, protocol: str) -> str:
    """`WORKDIR/detection/<protocol>`."""
    return os.path.join(workdir, DETECTION_SUBDIR, protocol)


def predictions_frame(parts: Sequence[tuple[data_lib.LikelihoodSet, np.ndarray]]) -> pd.DataFrame:
    """The predictions table of (examples, fake scores [N]) pairs, one row per frame."""
    frames = [
        pd.DataFrame(
            {
                "split": data.splits,
                "method": data.methods,
                "video": data.videos,
                "frame": data.frames,
                "label": data.labels,
                "score": scores,
            }
        )
        for data, scores in parts
    ]
    return pd.concat(frames, ignore_index=True)[list(PREDICTION_COLUMNS)]


def _write_csv_atomically(frame: pd.DataFrame, path: str) -> None:
    tmp = path + ".tmp"
    frame.to_csv(tmp, index=False, float_format="%.6f")
    os.replace(tmp, path)


def run_method(
    data: data_lib.LikelihoodSet,
    spec: protocols.ProtocolSpec,
    out_dir: str,
    config: DetectorConfig,
    verbose: int = 0,
) -> dict[str, Any]:
    """Trains, evaluates and saves one method of one protocol; returns metrics.json.

    Raises:
      protocols.EmptySplitError: the protocol's data lacks real or fake examples.
    """
    split_data = protocols.build_protocol_data(data, spec)
    absent = [s for s in spec.train_sources if s not in split_data.train.composition()]
    if absent:
        logging.warning(
            "%s/%s: no training data of %s; training on the rest.",
            spec.protocol,
            spec.method,
            absent,
        )
    os.makedirs(out_dir, exist_ok=True)
    trained = training.train_detector(split_data.train, split_data.val, config, verbose=verbose)
    trained.model.save(os.path.join(out_dir, MODEL_FILE))
    # Selection is over: only now is the test split scored.
    val_scores = training.predict_scores(trained.model, split_data.val.maps, config.batch_size)
    test_scores = training.predict_scores(trained.model, split_data.test.maps, config.batch_size)
    _write_csv_atomically(
        predictions_frame([(split_data.val, val_scores), (split_data.test, test_scores)]),
        os.path.join(out_dir, PREDICTIONS_FILE),
    )
    evaluations = {}
    samples = {}
    for name, part, scores in (
        ("test", split_data.test, test_scores),
        ("val", split_data.val, val_scores),
    ):
        evaluations[name], samples[name] = metrics_lib.evaluate(
            part.labels,
            scores,
            part.video_keys,
            num_samples=config.bootstrap_samples,
            seed=config.seed,
        )
    report = {
        "protocol": spec.protocol,
        "method": spec.method,
        "test": evaluations["test"],
        "val": evaluations["val"],
        "training": {
            "sources": {
                "train": list(spec.train_sources),
                "val": list(spec.val_sources),
                "test": list(spec.test_sources),
            },
            "composition": {
                "train": split_data.train.composition(),
                "val": split_data.val.composition(),
                "test": split_data.test.composition(),
            },
            "absent_training_sources": absent,
            "test_method_seen_in_training": bool(
                np.any(split_data.train.methods == spec.method)
                or np.any(split_data.val.methods == spec.method)
            ),
            "balance": f"{training.BALANCE}: w_c = N / (2 N_c)",
            "class_weights": {str(k): v for k, v in trained.class_weights.items()},
            "standardization": trained.standardization,
            "selection": "epoch with the best class-balanced val accuracy (ties: val loss)",
            "best_epoch": trained.best_epoch,
            "history": trained.history,
            "detector_config": dataclasses.asdict(config),
        },
        # Kept so that tables can bootstrap averages over methods.
        "bootstrap_samples": {
            "test_frame_accuracy": [round(float(v), 6) for v in samples["test"]["frame_accuracy"]]
        },
    }
    write_json_atomically(os.path.join(out_dir, METRICS_FILE), report)
    return report


def run(
    likelihoods_dir: str,
    workdir: str,
    protocol: str,
    config: DetectorConfig,
    config_name: str,
    methods: Sequence[str] = METHODS,
    verbose: int = 0,
) -> dict[str, Any]:
    """The `run_detection` stage for one protocol and the given methods.

    Returns:
      The summary written to `WORKDIR/detection/<protocol>/summary.json`:
      {"protocol", "methods": {method: {"status": "done" | "missing", "reason"?,
      "test_frame_accuracy"?}}}.

    Raises:
      ValueError: unknown protocol or method, a map of the wrong size, or finished
        methods in the folder made with other settings.
      FileNotFoundError: no likelihood shards under `likelihoods_dir`.
    """
    if protocol not in protocols.PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}: choose known or loo.")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}: choose from {', '.join(METHODS)}.")
    root = protocol_dir(workdir, protocol)
    settings = {"config": config_name, "detector": dataclasses.asdict(config)}
    finished = [m for m in METHODS if os.path.exists(os.path.join(root, m, METRICS_FILE))]
    previous = read_json(os.path.join(root, CONFIG_FILE))
    if previous and finished and {k: previous.get(k) for k in settings} != settings:
        raise ValueError(
            f"{root!r} holds results ({', '.join(finished)}) made with other settings "
            f"({previous.get('config')}: {previous.get('detector')}); one table must not mix "
            "them: use a new --workdir, or delete that folder to redo every method."
        )
    todo = [m for m in methods if m not in finished]
    summary: dict[str, Any] = {"protocol": protocol, "methods": {}}
    data = None
    if todo:
        data = data_lib.load_likelihoods(likelihoods_dir, sources=(ORIGINAL, *METHODS))
    write_json_atomically(
        os.path.join(root, CONFIG_FILE),
        {
            **settings,
            "protocol": protocol,
            "methods": list(methods),
            "likelihoods_dir": likelihoods_dir,
        },
    )
    for method in methods:
        out_dir = os.path.join(root, method)
        if method not in todo:
            logging.info("%s/%s: metrics.json exists, skipping.", protocol, method)
        else:
            spec = protocols.protocol_spec(protocol, method)
            try:
                logging.info("%s/%s: training.", protocol, method)
                run_method(data, spec, out_dir, config, verbose=verbose)
            except protocols.EmptySplitError as e:
                logging.error("%s/%s is missing: %s", protocol, method, e)
                summary["methods"][method] = {"status": "missing", "reason": str(e)}
                continue
        report = read_json(os.path.join(out_dir, METRICS_FILE))
        summary["methods"][method] = {
            "status": "done",
            "test_frame_accuracy": report["test"]["frame_accuracy"]["value"],
        }
    write_json_atomically(os.path.join(root, SUMMARY_FILE), summary)
    return summary
