"""One protocol of the paper's experiments (Table 1 or Table 2), method by method.

For each method X (Khodabakhsh & Busch, BIOSIG 2020, Sec. 4): build the protocol's
training, selection and test sets (`classifier.protocols`), train the LeNet-style
detector (`classifier.training`), score val and test, and write to
`detection/<protocol>/<X>/` of the work directory:
- `model.keras`: the selected model (map standardisation included);
- `predictions.csv`: split, method, video, frame, label, score (fake probability) for
  every val and test frame;
- `metrics.json` (written last, atomically): test and val metrics with bootstrap 95%
  intervals, counts, the training set composition, class weights, the chosen epoch.
The methods are those found in the likelihood maps (`classifier.data.find_methods`);
leave-one-out trains on all of them but the one under test. A method whose
metrics.json exists is skipped, so a re-run continues. A method whose data is missing
is logged and recorded as missing in `summary.json`; the others go on.
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
from data_prep.files import (
    check_writable,
    read_json,
    write_json_atomically,
    write_text_atomically,
)
from data_prep.methods import ORIGINAL, order_methods
from experiments.configs.base import ExperimentConfig
from experiments.pipeline.workdir import CONFIG_FILE, Workdir

MODEL_FILE = "model.keras"
PREDICTIONS_FILE = "predictions.csv"
METRICS_FILE = "metrics.json"
SUMMARY_FILE = "summary.json"
PREDICTION_COLUMNS = ("split", "method", "video", "frame", "label", "score")


def finished_methods(workdir: Workdir, protocol: str) -> tuple[str, ...]:
    """The methods of `detection/<protocol>/` whose metrics.json exists, in table order."""
    root = workdir.protocol(protocol)
    if not os.path.isdir(root):
        return ()
    return order_methods(
        m for m in os.listdir(root) if os.path.exists(os.path.join(root, m, METRICS_FILE))
    )


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
    predictions = predictions_frame([(split_data.val, val_scores), (split_data.test, test_scores)])
    write_text_atomically(
        os.path.join(out_dir, PREDICTIONS_FILE),
        predictions.to_csv(index=False, float_format="%.6f"),
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


def run_protocol(
    config: ExperimentConfig,
    workdir: Workdir,
    protocol: str,
    methods: Sequence[str] | None = None,
    likelihoods_dir: str | None = None,
    verbose: int = 0,
) -> dict[str, Any]:
    """The `run_detection` stage: one protocol, one detector per method.

    Args:
      config: the experiment configuration (its `name` and `detector` settings).
      workdir: the run's work directory; output under `detection/<protocol>/`.
      protocol: "known" (Table 1) or "loo" (Table 2).
      methods: the methods to test (table columns); None: every method found in the
        likelihood maps. A method without data is recorded as missing.
      likelihoods_dir: the maps to read; None: the workdir's `likelihoods/`.
      verbose: Keras fit verbosity.

    Returns:
      The summary written to `detection/<protocol>/summary.json`:
      {"protocol", "methods": {method: {"status": "done" | "missing", "reason"?,
      "test_frame_accuracy"?}}}.

    Raises:
      ValueError: unknown protocol, an empty method list, a map of the wrong size, or
        finished methods in the folder made with other settings.
      FileNotFoundError: no likelihood shards under `likelihoods_dir`.
      PermissionError: the protocol folder cannot be written.
    """
    if protocol not in protocols.PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}: choose known or loo.")
    likelihoods_dir = likelihoods_dir or workdir.likelihoods
    found = data_lib.find_methods(likelihoods_dir)
    methods = found if methods is None else tuple(methods)
    if not methods:
        raise ValueError("No methods to run: name at least one, or leave the list out.")
    absent = [m for m in methods if m not in found]
    if absent:
        logging.warning(
            "%s: no likelihood maps of %s (found: %s).", protocol, absent, ", ".join(found)
        )
    # Leave-one-out trains on every other method of the study: those of the data, and
    # any named method, whose absence is then recorded.
    pool = order_methods((*found, *methods))
    root = workdir.protocol(protocol)
    settings = {"config": config.name, "detector": dataclasses.asdict(config.detector)}
    finished = finished_methods(workdir, protocol)
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
        data = data_lib.load_likelihoods(likelihoods_dir, sources=(ORIGINAL, *pool))
    check_writable(root)
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
            spec = protocols.protocol_spec(protocol, method, pool)
            try:
                logging.info("%s/%s: training.", protocol, method)
                run_method(data, spec, out_dir, config.detector, verbose=verbose)
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
