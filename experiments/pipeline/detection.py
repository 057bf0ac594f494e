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
leave-one-out trains on all of them but the one under test. The `all` protocol (not a
table of the paper: the detector `export_model` ships) trains one detector on real +
every method and writes it to `detection/all/all/`. A method whose
metrics.json exists is skipped, so a re-run continues (the protocol folder is a
`data_prep.stage_folder.StageFolder`: its config.json holds the detector settings, and
other settings are refused once a method is finished). A method whose data is missing
is logged and recorded as missing in `summary.json`; the others go on.

The maps are streamed, never all held: one pass over every folder first
(`classifier.data.scan_folders`: map sizes, counts, videos, the moments of the maps),
so bad input fails before any training and nothing is written; then, per method,
training and validation streams (`classifier.data.stream_maps`), and the val and test
maps scored batch by batch, their rows written to predictions.csv as they come. Only
the per-frame labels, scores and video keys of val and test are kept, for the metrics.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import pandas as pd
from absl import logging

from classifier import data as data_lib
from classifier import inputs, protocols, training
from classifier import metrics as metrics_lib
from classifier.config import ALL, DETECTION_PROTOCOLS, LEAVE_ONE_OUT, MAPS, DetectorConfig
from data_prep.files import atomic_path, check_writable, read_json, write_json_atomically
from data_prep.methods import ORIGINAL, SPLITS, order_methods
from data_prep.stage_folder import StageFolder, key_clashes
from experiments.configs.base import ExperimentConfig
from experiments.pipeline.workdir import Workdir

MODEL_FILE = "model.keras"
PREDICTIONS_FILE = "predictions.csv"
METRICS_FILE = "metrics.json"
SUMMARY_FILE = "summary.json"
PREDICTION_COLUMNS = ("split", "method", "video", "frame", "label", "score")


def protocol_folder(workdir: Workdir, protocol: str, kind: str = MAPS) -> StageFolder:
    """`detection/<protocol>/` (or a baseline's `detection/<protocol>_<inputs>/`): one
    folder per method, and the settings every detector in it was trained with."""
    return StageFolder(
        workdir.protocol(protocol, kind),
        "detector results",
        "one table must not mix them: use a new --workdir, or delete that folder to redo "
        "every method",
    )


def finished_methods(workdir: Workdir, protocol: str, kind: str = MAPS) -> tuple[str, ...]:
    """The methods of `detection/<protocol>/` (or of a baseline's inputs) whose
    metrics.json exists, in table order."""
    folder = protocol_folder(workdir, protocol, kind)
    if not os.path.isdir(folder.path):
        return ()
    return order_methods(
        m for m in os.listdir(folder.path) if folder.done(os.path.join(m, METRICS_FILE))
    )


def predictions_frame(batch: dict[str, Any], scores: np.ndarray) -> pd.DataFrame:
    """The predictions rows of one scored batch (`stream_maps` dicts), one per frame."""

    def text(key: str) -> np.ndarray:
        return np.asarray(batch[key]).astype(str)

    return pd.DataFrame(
        {
            "split": text("split"),
            "method": text("method"),
            "video": text("video"),
            "frame": np.asarray(batch["frame"]),
            "label": np.asarray(batch["label"]),
            "score": scores,
        }
    )[list(PREDICTION_COLUMNS)]


@dataclasses.dataclass
class _Scored:
    """Per-frame labels int64 [N], fake scores float64 [N] and video keys str [N]."""

    labels: list[np.ndarray] = dataclasses.field(default_factory=list)
    scores: list[np.ndarray] = dataclasses.field(default_factory=list)
    keys: list[np.ndarray] = dataclasses.field(default_factory=list)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        def cat(parts, dtype):
            return np.concatenate(parts) if parts else np.zeros((0,), dtype)

        return cat(self.labels, np.int64), cat(self.scores, np.float64), cat(self.keys, str)


def _score_into(model, dataset, batch_size: int, csv_file, header: bool) -> _Scored:
    """Scores a stream batch by batch, appending its rows to the open csv_file."""
    scored = _Scored()
    for batch in dataset.batch(batch_size).prefetch(1):
        scores = training.predict_batch(model, batch["input"])
        rows = predictions_frame(
            {k: v.numpy() for k, v in batch.items() if k not in ("map", "input")}, scores
        )
        rows.to_csv(csv_file, index=False, header=header, float_format="%.6f")
        header = False
        scored.labels.append(rows["label"].to_numpy(np.int64))
        scored.scores.append(scores)
        scored.keys.append((rows["method"] + "/" + rows["video"]).to_numpy(str))
    return scored


def _merged(
    scans: dict[tuple[str, str], data_lib.MapScan], split: str, sources: Sequence[str]
) -> data_lib.MapScan:
    return data_lib.combine_scans(scans[(split, s)] for s in sources if (split, s) in scans)


def run_method(
    likelihoods_dir: str,
    scans: dict[tuple[str, str], data_lib.MapScan],
    spec: protocols.ProtocolSpec,
    out_dir: str,
    config: DetectorConfig,
    map_size: int = 64,
    verbose: int = 0,
    kind: str = MAPS,
) -> dict[str, Any]:
    """Trains, evaluates and saves one method of one protocol; returns metrics.json.

    Args:
      likelihoods_dir: the maps, streamed from their shards.
      scans: the statistics of every folder (`classifier.data.scan_folders`).
      spec: the protocol's sources per split; out_dir: where the files go.
      config: the detector's settings; map_size: the map side; verbose: Keras.
      kind: what the LeNet reads (`classifier.inputs`): the maps, or a baseline's pixels.

    Raises:
      protocols.EmptySplitError: the protocol's data lacks real or fake examples.
    """
    parts = {split: _merged(scans, split, getattr(spec, f"{split}_sources")) for split in SPLITS}
    # The set-membership checks of the protocols on every kind of record to be read.
    kinds = data_lib.concatenate([p.kinds_set() for p in parts.values()], map_size=0)
    protocols.build_protocol_data(kinds, spec)
    absent = [s for s in spec.train_sources if s not in parts["train"].composition()]
    if absent:
        logging.warning(
            "%s/%s: no training data of %s; training on the rest.",
            spec.protocol,
            spec.method,
            absent,
        )
    os.makedirs(out_dir, exist_ok=True)

    def stream(split: str, shuffle_seed: int | None = None):
        sources = getattr(spec, f"{split}_sources")
        return data_lib.stream_maps(
            likelihoods_dir, split, sources, map_size, shuffle_seed, kind=kind
        )

    # tf.data combines the op seeds of the shuffles with the global seed in force when
    # the stream is built: fixed here, a method gives the same run alone or after others.
    keras.utils.set_random_seed(config.seed)
    trained = training.train_streamed(
        stream("train", shuffle_seed=config.seed),
        stream("val"),
        parts["train"],
        parts["val"],
        config,
        map_size=map_size,
        verbose=verbose,
        kind=kind,
    )
    trained.model.save(os.path.join(out_dir, MODEL_FILE))
    # Selection is over: only now is the test split scored.
    scored = {}
    with atomic_path(os.path.join(out_dir, PREDICTIONS_FILE)) as tmp, open(tmp, "w") as f:
        scored["val"] = _score_into(trained.model, stream("val"), config.batch_size, f, True)
        scored["test"] = _score_into(trained.model, stream("test"), config.batch_size, f, False)
    evaluations = {}
    samples = {}
    # The val split also chooses a threshold (best balanced accuracy), applied to test.
    threshold = metrics_lib.balanced_threshold(*scored["val"].arrays()[:2])
    for name in ("test", "val"):
        labels, scores, keys = scored[name].arrays()
        evaluations[name], samples[name] = metrics_lib.evaluate(
            labels,
            scores,
            keys,
            num_samples=config.bootstrap_samples,
            seed=config.seed,
            val_threshold=threshold if name == "test" else None,
        )
    report = {
        "protocol": spec.protocol,
        "method": spec.method,
        "inputs": kind,
        "test": evaluations["test"],
        "val": evaluations["val"],
        "training": {
            "sources": {
                "train": list(spec.train_sources),
                "val": list(spec.val_sources),
                "test": list(spec.test_sources),
            },
            "composition": {split: parts[split].composition() for split in SPLITS},
            "absent_training_sources": absent,
            "test_method_seen_in_training": spec.protocol == ALL
            or spec.method in parts["train"].frames
            or spec.method in parts["val"].frames,
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
    """The `run_detection` stage: one protocol, one detector per method and input.

    The LeNet on the maps (the method) first, then, for the protocols of
    `config.detector.baseline_protocols` (known and leave-one-out by default), the same
    LeNet on each baseline input of `config.detector.inputs` (`classifier.inputs`: the
    crops' pixels) in `detection/<protocol>_<inputs>/`.
    Leave-one-out needs two methods or more: with one (a dataset whose fakes name no
    method) it is skipped, and its summary says why.

    Args:
      config: the experiment configuration (its `name` and `detector` settings).
      workdir: the run's work directory; output under `detection/<protocol>/`.
      protocol: "known" (Table 1), "loo" (Table 2) or "all" (one detector, `all`,
        on real + every method, maps only).
      methods: the methods to test (table columns); None: every method found in the
        likelihood maps. A method without data is recorded as missing. For "all":
        the methods the one detector trains and is tested on.
      likelihoods_dir: the maps to read; None: the workdir's `likelihoods/`.
      verbose: Keras fit verbosity.

    Returns:
      The summary of the maps' detectors, as written to
      `detection/<protocol>/summary.json`: {"protocol", "inputs", "methods": {method:
      {"status": "done" | "missing", "reason"?, "test_frame_accuracy"?}}}, or
      {"protocol", "inputs", "skipped": why} for a leave-one-out of one method.

    Raises:
      ValueError: unknown protocol or input, an empty method list, a map of the wrong
        size, or finished methods in the folder made with other settings.
      FileNotFoundError: no likelihood shards under `likelihoods_dir`.
      PermissionError: the protocol folder cannot be written.
    """
    if protocol not in DETECTION_PROTOCOLS:
        raise ValueError(
            f"Unknown protocol {protocol!r}: choose one of {', '.join(DETECTION_PROTOCOLS)}."
        )
    inputs.check_kinds(config.detector.inputs)
    kinds = config.detector.inputs
    if protocol not in config.detector.baseline_protocols:  # `all`: the maps only
        kinds = tuple(k for k in kinds if k == MAPS) or (MAPS,)
    scans: dict[tuple[str, ...], dict[tuple[str, str], data_lib.MapScan]] = {}
    summaries = [
        _run_inputs(config, workdir, protocol, methods, likelihoods_dir, verbose, kind, scans)
        for kind in kinds
    ]
    return summaries[0]


def _run_inputs(
    config: ExperimentConfig,
    workdir: Workdir,
    protocol: str,
    methods: Sequence[str] | None,
    likelihoods_dir: str | None,
    verbose: int,
    kind: str,
    scan_cache: dict[tuple[str, ...], dict[tuple[str, str], data_lib.MapScan]],
) -> dict[str, Any]:
    """One protocol's detectors on one input kind (`run_protocol`); the scans of the
    maps (every input's statistics) are made once and kept in `scan_cache`."""
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
    if protocol == ALL:
        # One detector on the methods asked for (default: every one found).
        pool, methods = order_methods(methods), (ALL,)
    root = workdir.protocol(protocol, kind)
    summary: dict[str, Any] = {"protocol": protocol, "inputs": kind, "methods": {}}
    if protocol == LEAVE_ONE_OUT and len(pool) < 2:
        summary = {
            "protocol": protocol,
            "inputs": kind,
            "skipped": f"leave-one-out needs two methods or more; the data has "
            f"{', '.join(pool) or 'none'} (a dataset whose fakes name no method has one)",
        }
        logging.warning("%s (%s): skipped: %s.", protocol, kind, summary["skipped"])
        check_writable(root)
        write_json_atomically(os.path.join(root, SUMMARY_FILE), summary)
        return summary
    # As JSON gives them back (tuples as lists), so a re-run compares like with like.
    settings = json.loads(
        json.dumps({"config": config.name, "detector": dataclasses.asdict(config.detector)})
    )
    finished = finished_methods(workdir, protocol, kind)
    folder = protocol_folder(workdir, protocol, kind)

    def clashes(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
        # Settings matter once a method is finished: its row would share the table.
        differ = key_clashes(tuple(settings))(saved, now)
        return [f"{', '.join(finished)} finished", *differ] if finished and differ else []

    folder.check(settings, clashes)
    todo = [m for m in methods if m not in finished]
    scans: dict[tuple[str, str], data_lib.MapScan] = {}
    if todo:
        # One pass over every map before anything is written: sizes checked, the
        # statistics of every folder kept (not the maps), shared by the inputs.
        sources = (ORIGINAL, *pool)
        if sources not in scan_cache:
            scan_cache[sources] = data_lib.scan_folders(likelihoods_dir, sources=sources)
        scans = scan_cache[sources]
    folder.claim(
        {
            **settings,
            "protocol": protocol,
            "inputs": kind,
            "methods": list(methods),
            "likelihoods_dir": likelihoods_dir,
        },
        clashes,
    )
    for method in methods:
        out_dir = os.path.join(root, method)
        if method not in todo:
            logging.info("%s/%s: metrics.json exists, skipping.", protocol, method)
        else:
            spec = protocols.protocol_spec(protocol, method, pool)
            try:
                logging.info("%s/%s on %s: training.", protocol, method, kind)
                run_method(
                    likelihoods_dir,
                    scans,
                    spec,
                    out_dir,
                    config.detector,
                    verbose=verbose,
                    kind=kind,
                )
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
