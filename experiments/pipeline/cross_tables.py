"""The cross-dataset / cross-compression table from saved evaluations.

Reads the `metrics.json` of evaluation folders (`evaluation.evaluate_model`) and writes
`results/cross.{csv,md,tex}`: one row per training data and protocol (from each
model's manifest: dataset, compression, protocol, method), one column per test set:
`FF++ <method> <compression>` for FF++ (reals + that method's fakes; `all`: every
fake), `Generated FF++ <method> <compression>` for the generated miniature (its c23
and c40 are JPEG stand-ins for FF++'s H.264 levels, said so in the notes), and one
column for each other dataset (Celeb-DF v2, DFDC, a folder set by its folder name).
A cell holds frame AUC and video AUC, each with its 95% bootstrap interval over videos.

Published figures sit beside ours only where the cell is the same experiment:
DeepfakeBench (Yan et al., NeurIPS 2023 Datasets and Benchmarks), Xception trained on
FF++ c23, cross-dataset frame AUC 0.7365 on Celeb-DF v2 and 0.7077 on DFDC; they
appear as a reference row only when the table has a row trained on FF++ c23 and the
matching test column.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
from collections.abc import Sequence
from typing import Any

import pandas as pd

from data_prep.datasets.generated import LEVEL_CODECS, describe_level
from data_prep.files import check_writable, read_json
from experiments.pipeline import report, run_log
from experiments.pipeline.workdir import Workdir

# evaluation.py's (= detection.METRICS_FILE), spelt here so that building a table
# loads no TensorFlow.
METRICS_FILE = "metrics.json"

CROSS_NAME = "cross"
MISSING = "-"
# (training dataset, compression) -> {test dataset: frame AUC}; Yan et al. 2023, Table 3.
DEEPFAKEBENCH_ROW = "Xception (DeepfakeBench), FF++ c23"
DEEPFAKEBENCH = {("ffpp", "c23"): {"celebdf": 0.7365, "dfdc": 0.7077}}
DEEPFAKEBENCH_NOTE = (
    "Published: DeepfakeBench (Yan et al., NeurIPS 2023 Datasets and Benchmarks), "
    "Xception trained on FF++ c23, cross-dataset frame AUC (video AUC not given); shown "
    "only in the Celeb-DF v2 and DFDC columns and only where a row of ours is trained on "
    "FF++ c23 too: other cells are different experiments."
)
_DATASET_NAMES = {
    "ffpp": "FF++",
    "generated": "Generated FF++",
    "celebdf": "Celeb-DF v2",
    "dfdc": "DFDC",
}
CSV_COLUMNS = (
    "training",
    "test_set",
    "kind",
    "frame_auc",
    "frame_auc_low",
    "frame_auc_high",
    "video_auc",
    "video_auc_low",
    "video_auc_high",
    "frames",
    "videos",
    "same_dataset_as_training",
    "evaluation",
)


class CrossTableError(ValueError):
    """An evaluation folder that cannot be read, or two evaluations of one cell."""


@dataclasses.dataclass
class Result:
    """The result of one (training, test set) cell; NaN where not given."""

    frame_auc: tuple[float, float, float]  # value, ci_low, ci_high
    video_auc: tuple[float, float, float]
    frames: int | None
    videos: int | None
    same_dataset: bool | None
    source: str  # the evaluation folder, or the citation
    published: bool = False


@dataclasses.dataclass
class CrossTable:
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Result]
    references: dict[tuple[str, str], Result]  # published figures, same layout
    notes: list[str]


def training_label(trained_on: dict[str, Any]) -> str:
    """The row of a model: `FF++ c23, protocol all` (method added unless `all`)."""
    dataset = trained_on.get("dataset") or "unknown"
    name = _DATASET_NAMES.get(dataset, dataset)
    compression = trained_on.get("compression")
    data = f"{name} {compression}" if dataset in ("ffpp", "generated") and compression else name
    protocol, method = trained_on.get("protocol"), trained_on.get("method")
    label = f"{data}, protocol {protocol}"
    return label if method in (None, "all") else f"{label} ({method})"


def columns_of(evaluated: dict[str, Any], methods: Sequence[str]) -> list[tuple[str, str]]:
    """(column, per-method key) of one evaluation; key "" = the overall metrics."""
    dataset = evaluated["dataset"]
    if dataset in ("ffpp", "generated"):
        name = _DATASET_NAMES[dataset]
        comp = evaluated.get("compression", "raw")
        return [(f"{name} {m} {comp}", m) for m in methods] + [(f"{name} all {comp}", "")]
    if dataset == "folder":
        root = os.path.normpath(str(evaluated.get("root", "")))
        return [(f"Folder {os.path.basename(root) or root}", "")]
    return [(_DATASET_NAMES.get(dataset, dataset), "")]


def _triple(report: dict[str, Any], metric: str) -> tuple[float, float, float]:
    entry = report.get(metric) or {}
    return tuple(
        float("nan") if entry.get(k) is None else float(entry[k])
        for k in ("value", "ci_low", "ci_high")
    )


def read_evaluation(folder: str) -> dict[str, Any]:
    """The metrics.json of one evaluation folder.

    Raises:
      CrossTableError: no metrics.json (an unfinished or wrong folder), or not one of
        `evaluate`.
    """
    path = os.path.join(folder, METRICS_FILE)
    try:
        report = read_json(path)
    except ValueError as err:
        raise CrossTableError(f"{path!r} is not valid JSON ({err}): run evaluate again.") from None
    if report is None:
        raise CrossTableError(
            f"No {METRICS_FILE} in {folder!r}: it is not a finished evaluation; run "
            "`python -m experiments.evaluate` into it, or leave it out."
        )
    if not {"metrics", "evaluated", "model"} <= set(report):
        raise CrossTableError(
            f"{path!r} is not the metrics.json of an evaluation (experiments.evaluate)."
        )
    return report


def build_table(folders: Sequence[str]) -> CrossTable:
    """The table of the evaluations in `folders` (at least one).

    Raises:
      CrossTableError: no folders, an unreadable one, or two evaluations of one cell.
    """
    if not folders:
        raise CrossTableError(
            "No evaluation folders: pass --evaluations (folders written by evaluate)."
        )
    rows: list[str] = []
    columns: list[str] = []
    cells: dict[tuple[str, str], Result] = {}
    trained: set[tuple[str, str]] = set()
    evaluated_levels: set[tuple[str, str]] = set()
    for folder in folders:
        report = read_evaluation(folder)
        evaluated = report["evaluated"]
        evaluated_levels.add((str(evaluated.get("dataset")), str(evaluated.get("compression"))))
        trained_on = report["model"].get("trained_on") or {}
        row = training_label(trained_on)
        trained.add((str(trained_on.get("dataset")), str(trained_on.get("compression"))))
        if row not in rows:
            rows.append(row)
        per_method = report.get("per_method", {})
        for column, key in columns_of(evaluated, list(per_method)):
            part = per_method[key] if key else report["metrics"]
            if (row, column) in cells:
                raise CrossTableError(
                    f"Two evaluations of {row!r} on {column!r}: {cells[(row, column)].source!r} "
                    f"and {folder!r}; pass only one."
                )
            if column not in columns:
                columns.append(column)
            counts = part.get("counts", {})
            cells[(row, column)] = Result(
                frame_auc=_triple(part, "frame_auc"),
                video_auc=_triple(part, "video_auc"),
                frames=counts.get("frames"),
                videos=counts.get("videos"),
                same_dataset=report.get("leakage", {}).get("same_dataset_as_training"),
                source=folder,
            )
    generated_levels = sorted(
        {c for dataset, c in evaluated_levels if dataset == "generated" and c in LEVEL_CODECS}
    )
    references: dict[tuple[str, str], Result] = {}
    for key, values in DEEPFAKEBENCH.items():
        if key not in trained:
            continue
        for dataset, auc in values.items():
            column = _DATASET_NAMES[dataset]
            if column in columns:
                nan = float("nan")
                references[(DEEPFAKEBENCH_ROW, column)] = Result(
                    (auc, nan, nan), (nan, nan, nan), None, None, False, "Yan et al. 2023", True
                )
    notes = [
        "Cells: frame AUC [95% CI] / video AUC [95% CI] (a video's score: the mean of its "
        "frame scores); intervals resample whole videos, stratified by class.",
        "FF++ <method> columns: the test split's reals with that method's fakes; `all`: "
        "every fake. A dataset without an official split is evaluated as its adapter's "
        "split policy says (metrics.json `evaluated.split_policy`).",
        "Models are only scored on the test sets: no training, selection or threshold "
        "tuning on them.",
    ]
    if generated_levels:
        notes.append(
            "Generated FF++ c23 / c40: the generated dataset's stand-ins for FF++'s H.264 "
            "levels (OpenCV's wheels cannot encode H.264): "
            + "; ".join(describe_level(level) for level in generated_levels)
            + ". The qualities give the PSNR to raw that x264 gives at CRF 23 / 40 on the "
            "generated videos (about 35 / 28 dB), but JPEG has no motion compensation: "
            "compare these columns with the raw ones, not with FF++ c23 / c40."
        )
    if references:
        notes.append(DEEPFAKEBENCH_NOTE)
    else:
        notes.append(
            "No published figure applies: DeepfakeBench's Celeb-DF v2 / DFDC frame AUCs "
            "(Xception, trained on FF++ c23) are shown only for a row trained on FF++ c23 "
            "with those columns."
        )
    return CrossTable(rows, columns, cells, references, notes)


def _fmt(triple: tuple[float, float, float]) -> str:
    value, low, high = triple
    if math.isnan(value):
        return "n/a"
    if math.isnan(low):
        return f"{value:.4f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _cell_text(cell: Result | None) -> str:
    if cell is None:
        return MISSING
    if cell.published:  # a frame AUC only
        return f"{_fmt(cell.frame_auc)} (published)"
    return f"{_fmt(cell.frame_auc)} / {_fmt(cell.video_auc)}"


def _all_rows(table: CrossTable) -> list[tuple[str, dict[tuple[str, str], Result]]]:
    rows = [(r, table.cells) for r in table.rows]
    if table.references:
        rows.append((DEEPFAKEBENCH_ROW, table.references))
    return rows


TITLE = "Cross-dataset and cross-compression evaluation: frame AUC / video AUC [95% CI]."


def to_report(table: CrossTable) -> report.Report:
    """The table as a report. CSV: long format, one line per filled cell (ours, then
    published) with CSV_COLUMNS; text: one row per training, one column per test set."""
    values, shown = [], []
    for row, cells in _all_rows(table):
        kind = "published" if cells is table.references else "ours"
        for column in table.columns:
            cell = cells.get((row, column))
            if cell is not None:
                values.append(
                    (
                        row,
                        column,
                        kind,
                        *cell.frame_auc,
                        *cell.video_auc,
                        cell.frames,
                        cell.videos,
                        cell.same_dataset,
                        cell.source,
                    )
                )
        shown.append([row, *(_cell_text(cells.get((row, c))) for c in table.columns)])
    return report.Report(
        name=CROSS_NAME,
        values=pd.DataFrame(values, columns=list(CSV_COLUMNS), dtype=object),
        shown=pd.DataFrame(shown, columns=["Trained on", *table.columns], dtype=object),
        caption=TITLE,
        notes=tuple(table.notes),
        float_format="%.6f",
    )


def expand_folders(specs: Sequence[str]) -> list[str]:
    """Folders from comma-free specs: a folder as is, a glob expanded (sorted), only
    folders holding a metrics.json kept from a glob.

    Raises:
      CrossTableError: a named folder that does not exist, or a glob matching none.
    """
    folders: list[str] = []
    for spec in specs:
        if any(c in spec for c in "*?["):
            matched = sorted(
                p for p in glob.glob(spec) if os.path.isfile(os.path.join(p, METRICS_FILE))
            )
            if not matched:
                raise CrossTableError(f"No finished evaluation folder matches {spec!r}.")
            folders += matched
        elif not os.path.isdir(spec):
            raise CrossTableError(f"Evaluation folder {spec!r} does not exist.")
        else:
            folders.append(spec)
    return list(dict.fromkeys(folders))


def make_cross_table(workdir: Workdir, folders: Sequence[str]) -> list[str]:
    """Writes `results/cross.{csv,md,tex}` of the workdir, its notes to
    `results/run.json`; returns the paths of the table (csv, md, tex)."""
    table = to_report(build_table(folders))
    check_writable(workdir.results)
    paths = report.write_report(table, workdir.results)
    run_log.write_run_json(workdir, {table.name: table.record()})
    return paths
