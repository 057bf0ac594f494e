"""Tables 1 and 2 of the paper, rebuilt from saved detection results.

Reads `detection/{known,loo}/<method>/metrics.json` (and the stage configs and
manifests for the header) of a work directory and writes `results/table{1,2}.{csv,md,tex}`
in the layout of Khodabakhsh & Busch (BIOSIG 2020): one column per method (the
paper's DF, F2F, FS, NT, then any other method found in the run's likelihood maps or
detection results; Table 2 adds the average), frame accuracy in % at a 0.5 threshold
on the test split. Our value carries its 95% bootstrap interval over videos, the
paper's value sits beside it with the difference (ours - paper, percentage points),
and Table 1 lists the paper's baselines too; a number the paper does not give (a
method it did not study) is `n/a`. Extra rows give our frame AUC, EER and video-level
accuracy and AUC. A method without results is marked `missing`, with the reason.

Rows at the end give a baseline without any LeNet: the UBM's image log-likelihood
itself as the score (`loglik_baseline`: -log p(x), and Serra et al.'s complexity-
corrected -log2 p(x) - PNG bits), its threshold chosen on the protocol's val split,
computed from the likelihood shards; without a `likelihoods/` folder these rows are
left out with a note.

A header line names the dataset, compression and configuration; for a smoke run on
generated data it says plainly that the numbers are not comparable with the paper's.
It opens the Markdown, ends the LaTeX caption and is kept in `results/run.json` with
the notes; the CSV is plain (`report`).

Rows are built as lists of (label, {column: Cell}); a new set of results is a few more
such rows (`_our_rows` gives those of one set of detectors).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from classifier import data as data_lib
from classifier.config import INPUT_KINDS, MAPS
from classifier.inputs import LABELS
from classifier.protocols import PROTOCOLS
from data_prep.datasets import generated
from data_prep.files import check_writable, read_json
from data_prep.methods import PAPER_METHODS, abbreviation, order_methods
from experiments.configs import CONFIG_NAMES, load_config
from experiments.pipeline import detection, loglik_baseline, paper_results, report, run_log
from experiments.pipeline.workdir import CONFIG_FILE, DETECTION, MANIFEST_FILE, Workdir

MISSING = "missing"
NOT_APPLICABLE = "n/a"
OURS = "This run"
EXTRA_METRICS = (
    ("frame_auc", "frame AUC (%)"),
    ("frame_eer", "frame EER (%)"),
    ("video_accuracy", "video accuracy (%)"),
    ("video_auc", "video AUC (%)"),
)
BASELINE = "Baseline"
BASELINE_METRICS = (("frame_auc", "frame AUC (%)"), ("frame_accuracy", "frame accuracy (%)"))
# {protocol: {method: {score: metrics dict or reason str}}}, as loglik_baseline gives it.
Baselines = dict[str, dict[str, dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Cell:
    """One table cell: a value in %, optionally with a 95% interval, or a placeholder.

    Without a value the cell shows `placeholder`: MISSING (no result of this run) or
    NOT_APPLICABLE (a number the paper does not give).
    """

    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    placeholder: str = MISSING

    @property
    def missing(self) -> bool:
        return self.value is None

    def text(self, digits: int = 2) -> str:
        if self.value is None:
            return self.placeholder
        if self.ci_low is None or self.ci_high is None or np.isnan(self.ci_low):
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.ci_low:.1f}, {self.ci_high:.1f}]"


_NOT_GIVEN = Cell(placeholder=NOT_APPLICABLE)


# A labelled row: (label, {column: cell}).
Row = tuple[str, dict[str, Cell]]


# --- what the run was ----------------------------------------------------------------


def describe_run(workdir: Workdir) -> dict[str, Any]:
    """Dataset, compression and configs of the run, from the files its stages saved.

    Returns {"dataset", "generated" (bool), "compression", "config", "smoke" (bool)}.
    """
    faces = read_json(os.path.join(workdir.faces, MANIFEST_FILE)) or {}
    ffpp_root = faces.get("ffpp_root")
    generated = bool(ffpp_root) and _is_generated(ffpp_root)
    adapter = faces.get("dataset", "ffpp")
    compression = (faces.get("settings") or {}).get("compression", "unknown")
    names = []
    for protocol in PROTOCOLS:
        config = read_json(os.path.join(workdir.protocol(protocol), CONFIG_FILE))
        if config and config.get("config") not in names:
            names.append(config.get("config"))
    smoke = any(load_config(n).smoke for n in names if n in CONFIG_NAMES)
    if generated:
        dataset = "generated FF++-layout dataset (synthetic faces and manipulations)"
    elif ffpp_root and adapter == "ffpp":
        dataset = "FaceForensics++"
    elif ffpp_root:
        dataset = f"{adapter} dataset ({os.path.basename(os.path.normpath(ffpp_root))})"
    else:
        dataset = "unknown dataset (no faces/manifest.json)"
    return {
        "dataset": dataset,
        "ffpp_layout": generated or adapter == "ffpp" or not ffpp_root,
        "generated": generated,
        "compression": compression,
        "config": ", ".join(n or "unknown" for n in names) or "unknown",
        "smoke": smoke,
    }


def _is_generated(ffpp_root: str) -> bool:
    return os.path.exists(os.path.join(ffpp_root, generated.MARKER))


def header_line(info: dict[str, Any]) -> str:
    """One line naming dataset, compression and config; smoke runs say so plainly."""
    line = (
        f"Dataset: {info['dataset']}; compression: {info['compression']}; config: {info['config']}."
    )
    if info["generated"]:
        line += (
            " SMOKE RUN on generated data: these numbers test the pipeline and are NOT "
            "comparable with the paper's."
        )
    elif info["smoke"]:
        line += (
            " SMOKE configuration (CPU-sized models): these numbers are NOT comparable "
            "with the paper's."
        )
    return line


def table_methods(workdir: Workdir) -> tuple[str, ...]:
    """The methods the tables show, in `order_methods` order.

    The paper's four where the dataset is FF++ or in its layout (its rows have their
    numbers), and every other method the run found: folders of `likelihoods/`,
    detector folders under `detection/<protocol>/` and the methods each protocol's
    `summary.json` names.
    """
    found = list(PAPER_METHODS) if describe_run(workdir)["ffpp_layout"] else []
    for sources in data_lib.available_sources(workdir.likelihoods).values():
        found += sources
    for protocol in PROTOCOLS:
        root = workdir.protocol(protocol)
        if os.path.isdir(root):
            found += [m for m in os.listdir(root) if os.path.isdir(os.path.join(root, m))]
        summary = read_json(os.path.join(root, detection.SUMMARY_FILE)) or {}
        found += list(summary.get("methods", {}))
    return order_methods(found)


# --- cells from saved results --------------------------------------------------------


def load_results(
    workdir: Workdir, protocol: str, methods: Sequence[str], kind: str = MAPS
) -> tuple[dict[str, dict | None], dict[str, str]]:
    """({method: metrics.json or None}, {method: reason it is missing}) of the LeNets on
    `kind` (`classifier.inputs`)."""
    root = workdir.protocol(protocol, kind)
    summary = read_json(os.path.join(root, detection.SUMMARY_FILE)) or {}
    results, reasons = {}, {}
    for method in methods:
        results[method] = read_json(os.path.join(root, method, detection.METRICS_FILE))
        if results[method] is None:
            entry = summary.get("methods", {}).get(method, {})
            reasons[method] = entry.get(
                "reason", summary.get("skipped", "not run (no metrics.json)")
            )
    return results, reasons


def skipped_reason(workdir: Workdir, protocol: str) -> str | None:
    """Why the protocol was not run at all (leave-one-out of one method), or None."""
    summary = read_json(os.path.join(workdir.protocol(protocol), detection.SUMMARY_FILE))
    return (summary or {}).get("skipped")


def _input_rows(
    workdir: Workdir, protocol: str, methods: Sequence[str], average: bool
) -> tuple[list[Row], list[str]]:
    """The rows of the same LeNet on the baseline inputs (pixels; `classifier.inputs`)
    that this run trained: frame accuracy and AUC each; a note per input run."""
    rows: list[Row] = []
    kinds = []
    for kind in INPUT_KINDS[1:]:
        if not os.path.isdir(workdir.protocol(protocol, kind)):
            continue
        kinds.append(kind)
        results, _ = load_results(workdir, protocol, methods, kind)
        for metric, label in BASELINE_METRICS[::-1]:
            row = _ours_row(results, metric)
            if average:
                row["Avg"] = _mean_cell(row.values())
            rows.append((f"{LABELS[kind]}: {label}", row))
    notes = (
        [
            "LeNet on pixels: the same detector, training and selection on the same crops' "
            "pixels (0-255, standardised per channel on the training crops) instead of the "
            "likelihood maps; maps + pixels: both as two channels."
        ]
        if kinds
        else []
    )
    return rows, notes


def _metric_cell(report: dict | None, metric: str) -> Cell:
    if report is None:
        return Cell()
    entry = report["test"][metric]

    def pct(v):
        return None if v is None or (isinstance(v, float) and np.isnan(v)) else 100.0 * v

    return Cell(pct(entry["value"]), pct(entry["ci_low"]), pct(entry["ci_high"]))


def _ours_row(results: dict[str, dict | None], metric: str) -> dict[str, Cell]:
    return {abbreviation(m): _metric_cell(report, metric) for m, report in results.items()}


def _paper_row(values: dict[str, float], columns: Sequence[str]) -> dict[str, Cell]:
    return {c: Cell(values[c]) if c in values else _NOT_GIVEN for c in columns}


def _difference_row(ours: dict[str, Cell], paper: dict[str, Cell]) -> dict[str, Cell]:
    return {
        c: _NOT_GIVEN
        if p.missing
        else (Cell() if ours[c].missing else Cell(round(ours[c].value - p.value, 10)))
        for c, p in paper.items()
    }


def _average_cell(results: dict[str, dict | None]) -> Cell:
    """Mean test frame accuracy over the methods, its interval from the methods'
    independent bootstrap replicates averaged index by index."""
    reports = list(results.values())
    if any(r is None for r in reports):
        return Cell()
    value = 100.0 * float(np.mean([r["test"]["frame_accuracy"]["value"] for r in reports]))
    samples = [np.asarray(r["bootstrap_samples"]["test_frame_accuracy"]) for r in reports]
    n = min(len(s) for s in samples)
    if n == 0:
        return Cell(value)
    mean_samples = np.nanmean(np.stack([s[:n] for s in samples]), axis=0)
    low, high = np.nanquantile(mean_samples, [0.025, 0.975])
    return Cell(value, 100.0 * float(low), 100.0 * float(high))


def _missing_notes(reasons: dict[str, str]) -> list[str]:
    return [f"{abbreviation(m)} missing: {r}" for m, r in reasons.items()]


def _not_given_notes(methods: Sequence[str], average: bool) -> list[str]:
    """What `n/a` means, where a method of the run is not one of the paper's."""
    others = [abbreviation(m) for m in methods if m not in PAPER_METHODS]
    if not others:
        return []
    note = f"n/a: the paper gives no number for {', '.join(others)}"
    if average:
        note += f", nor an average over these {_number(len(methods))} methods"
    return [note + "."]


_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _number(n: int) -> str:
    return _NUMBER_WORDS[n] if n < len(_NUMBER_WORDS) else str(n)


# --- the image log-likelihood baseline -----------------------------------------------


def load_baselines(workdir: Workdir) -> Baselines | None:
    """The baselines of `loglik_baseline` for both protocols; None without shards."""
    if not data_lib.available_sources(workdir.likelihoods):
        return None
    return loglik_baseline.baseline_results(workdir.likelihoods, PROTOCOLS)


def baseline_label(score: str, metric_label: str) -> str:
    """The row label of one baseline score and metric."""
    return f"{BASELINE}: {loglik_baseline.SCORE_LABELS[score]}, {metric_label}"


def _baseline_rows(
    baselines: Baselines | None, protocol: str, methods: Sequence[str], average: bool
) -> list[Row]:
    if baselines is None:
        return []
    found = baselines.get(protocol, {})
    rows = []
    for score in loglik_baseline.SCORES:
        for metric, label in BASELINE_METRICS:
            row = {}
            for method in methods:
                entry = found.get(method, {}).get(score)
                value = entry.get(metric) if isinstance(entry, dict) else None
                ok = value is not None and not np.isnan(value)
                row[abbreviation(method)] = Cell(100.0 * value) if ok else Cell()
            if average:
                row["Avg"] = _mean_cell(row.values())
            rows.append((baseline_label(score, label), row))
    return rows


def _baseline_notes(baselines: Baselines | None, protocol: str, methods: Sequence[str]) -> list:
    if baselines is None:
        return [
            "Baseline rows (the image log-likelihood as a detector) left out: no likelihood "
            "shards under likelihoods/ to compute them from."
        ]
    val = (
        "real + the column's method"
        if protocol == "known"
        else "real + the other methods, never the column's"
    )
    notes = [
        "Baseline rows: no LeNet; the UBM's image log-likelihood itself scores each test "
        f"frame, its threshold the one maximising class-balanced accuracy on the val "
        f"split ({val}); -image log-likelihood: -log p(x) in nats; complexity-corrected "
        "(Serra et al., ICLR 2020): -log2 p(x) - L(x) in bits, L(x) the PNG size of the "
        "crop in bits; higher = more likely fake. No interval."
    ]
    found = baselines.get(protocol, {})
    for method in methods:
        entry = found.get(method)
        if entry is None:
            notes.append(f"Baseline for {abbreviation(method)} missing: no likelihood shards.")
            continue
        reasons = sorted({v for v in entry.values() if isinstance(v, str)})
        notes += [f"Baseline for {abbreviation(method)} missing: {r}." for r in reasons]
    return notes


_ACCURACY_NOTE = (
    "Frame accuracy (%) at a 0.5 threshold on the test split; [95% bootstrap interval, "
    "videos resampled]; difference = this run - paper, in percentage points."
)


def _our_rows(
    results: dict[str, dict | None], paper: dict[str, Cell], average: bool, name: str = OURS
) -> list[Row]:
    """The rows of one set of detectors: frame accuracy, its difference with the paper,
    then EXTRA_METRICS; with `average`, an `Avg` column (the accuracy's interval from
    `_average_cell`, the other metrics' plain means)."""
    accuracy = _ours_row(results, "frame_accuracy")
    if average:
        accuracy["Avg"] = _average_cell(results)
    rows = [
        (f"{name}: frame accuracy (%)", accuracy),
        ("Difference (this run - paper)", _difference_row(accuracy, paper)),
    ]
    for metric, label in EXTRA_METRICS:
        row = _ours_row(results, metric)
        if average:
            row["Avg"] = _mean_cell(row.values())
        rows.append((f"{name}: {label}", row))
    return rows


def _mean_cell(cells: Iterable[Cell]) -> Cell:
    """The mean of the cells' values; missing unless every cell has one."""
    cells = list(cells)
    if any(c.missing for c in cells):
        return Cell()
    return Cell(float(np.mean([c.value for c in cells])))


def table1(
    workdir: Workdir, header: str, methods: Sequence[str], baselines: Baselines | None = None
) -> report.Report:
    """Table 1 (known attacks) from `detection/known`, one column per method.

    `baselines` (from `load_baselines`) adds the baseline rows at the end; None: a
    note says they are left out.
    """
    results, reasons = load_results(workdir, "known", methods)
    columns = tuple(abbreviation(m) for m in methods)
    paper = _paper_row(paper_results.TABLE1_PAPER, columns)
    rows = [
        (f"{name} (FF++, quoted in paper)", _paper_row(values, columns))
        for name, values in paper_results.TABLE1_BASELINES
    ]
    rows.append((paper_results.PAPER_METHOD, paper))
    rows += _our_rows(results, paper, average=False)
    input_rows, input_notes = _input_rows(workdir, "known", methods, average=False)
    rows += input_rows
    rows += _baseline_rows(baselines, "known", methods, average=False)
    return _report(
        "table1",
        header,
        columns,
        rows,
        caption="Table 1: known attacks (train and test on real + the column's method).",
        notes=(
            _ACCURACY_NOTE,
            *_not_given_notes(methods, average=False),
            *_missing_notes(reasons),
            *input_notes,
            *_baseline_notes(baselines, "known", methods),
        ),
    )


def table2(
    workdir: Workdir, header: str, methods: Sequence[str], baselines: Baselines | None = None
) -> report.Report:
    """Table 2 (leave-one-out) from `detection/loo`, with the average column.

    The paper's average is over its four methods; beside another set of methods it
    is `n/a`. `baselines` as for `table1`.
    """
    results, reasons = load_results(workdir, "loo", methods)
    columns = (*(abbreviation(m) for m in methods), "Avg")
    paper_values = dict(paper_results.TABLE2_PAPER)
    if tuple(methods) == PAPER_METHODS:
        paper_values["Avg"] = paper_results.TABLE2_PAPER_AVG
    paper = _paper_row(paper_values, columns)
    rows = [(paper_results.PAPER_METHOD, paper)]
    rows += _our_rows(results, paper, average=True)
    input_rows, input_notes = _input_rows(workdir, "loo", methods, average=True)
    rows += input_rows
    rows += _baseline_rows(baselines, "loo", methods, average=True)
    others = _number(len(methods) - 1)
    skipped = skipped_reason(workdir, "loo")
    return _report(
        "table2",
        header,
        columns,
        rows,
        caption=(
            f"Table 2: unseen attacks, leave-one-out (train on real + the other {others} "
            "methods, test on real + the column's method)."
        ),
        notes=(
            _ACCURACY_NOTE,
            f"Avg interval: the {_number(len(methods))} methods' bootstrap replicates averaged.",
            *(
                [f"Leave-one-out not run: {skipped}; Table 1 is this dataset's result."]
                if skipped
                else []
            ),
            *_not_given_notes(methods, average=True),
            *_missing_notes(reasons),
            *input_notes,
            *_baseline_notes(baselines, "loo", methods),
        ),
    )


def _report(
    name: str,
    header: str,
    columns: Sequence[str],
    rows: Sequence[Row],
    caption: str,
    notes: Sequence[str],
) -> report.Report:
    """The rows as a report. CSV: `row`, then per column its value (or the cell's
    placeholder), `<column>_ci_low` and `<column>_ci_high`; text: `Cell.text`."""
    values, shown = [], []
    for label, cells in rows:
        line: dict[str, Any] = {"row": label}
        for c in columns:
            cell = cells[c]
            line[c] = cell.placeholder if cell.missing else cell.value
            line[f"{c}_ci_low"] = None if cell.missing else cell.ci_low
            line[f"{c}_ci_high"] = None if cell.missing else cell.ci_high
        values.append(line)
        shown.append({"": label, **{c: cells[c].text() for c in columns}})
    return report.Report(
        name=name,
        values=pd.DataFrame(values, dtype=object),
        shown=pd.DataFrame(shown, dtype=object),
        caption=caption,
        header=header,
        notes=tuple(notes),
    )


def make_tables(workdir: Workdir) -> list[str]:
    """Writes Tables 1 and 2 as csv, md and tex under `results/`, their header and
    notes to `results/run.json`; returns the paths of the tables.

    The baseline rows are computed from `likelihoods/` when it holds shards.

    Raises:
      FileNotFoundError: no detection results at all under `detection/`.
      PermissionError: `results/` cannot be written.
    """
    if not os.path.isdir(workdir.detection):
        raise FileNotFoundError(
            f"No detection results in {workdir.root!r} (no {DETECTION}/ folder): run "
            "run_detection --protocol=known and --protocol=loo first, or check --workdir."
        )
    header = header_line(describe_run(workdir))
    methods = table_methods(workdir)
    check_writable(workdir.results)
    baselines = load_baselines(workdir)
    reports = (
        table1(workdir, header, methods, baselines),
        table2(workdir, header, methods, baselines),
    )
    paths = [p for r in reports for p in report.write_report(r, workdir.results)]
    run_log.write_run_json(workdir, {r.name: r.record() for r in reports})
    return paths
