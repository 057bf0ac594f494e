"""The one renderer of result tables: a DataFrame with its notes, written as csv, md and tex.

Every table of `results/` (Tables 1 and 2, the cross-dataset table, the localisation
tables) is a `Report`: `values`, the machine-readable DataFrame that becomes the CSV
(plain CSV: its first line is the column names, so `pandas.read_csv(path)` and a
spreadsheet read it as it is), and `shown`, the same results as text cells for
people, which becomes the Markdown (`DataFrame.to_markdown`, through tabulate) and the
LaTeX table (`DataFrame.to_latex`, booktabs). What the run was (`header`) and what the
columns mean (`caption`, `notes`) go to the Markdown and the LaTeX, and to
`results/run.json` (`record`), never into the CSV.

Quoting is pandas' (the csv module's minimal quoting: a field holding a comma, a quote
or a line break is quoted, its quotes doubled); the only escaping written here is
LaTeX's (`escape_tex`), for the cells, the caption and the notes alike.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from data_prep.files import write_text_atomically

EXTENSIONS = ("csv", "md", "tex")
FLOAT_FORMAT = "%.4f"

# LaTeX's special characters in text mode; the backslash first, so that the
# backslashes of the other replacements are not escaped again.
_TEX_SPECIALS = (
    ("\\", r"\textbackslash{}"),
    ("&", r"\&"),
    ("%", r"\%"),
    ("$", r"\$"),
    ("#", r"\#"),
    ("_", r"\_"),
    ("{", r"\{"),
    ("}", r"\}"),
    ("~", r"\textasciitilde{}"),
    ("^", r"\textasciicircum{}"),
)


@dataclasses.dataclass(frozen=True)
class Report:
    """One result table and what it needs to be read.

    Attributes:
      name: the file stem: `<name>.csv`, `<name>.md`, `<name>.tex`; the LaTeX label
        `tab:<name>`.
      values: the CSV, one line per row; numbers stay numbers (written with
        `float_format`, or a column's entry in `formats`; NaN and None as empty
        fields), strings (placeholders such as `missing`) as they are.
      shown: [rows, columns] text cells for the Markdown and the LaTeX; its first
        `label_columns` columns name the row (left-aligned in LaTeX).
      caption: what the table is (the LaTeX caption, the Markdown's first note).
      header: what the run was (dataset, compression, config), or "".
      notes: what the columns and placeholders mean, one sentence group each.
    """

    name: str
    values: pd.DataFrame
    shown: pd.DataFrame
    caption: str
    header: str = ""
    notes: tuple[str, ...] = ()
    label_columns: int = 1
    float_format: str = FLOAT_FORMAT
    formats: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The table's entry of `run.json`: caption, header and notes."""
        return {"caption": self.caption, "header": self.header, "notes": list(self.notes)}


def escape_tex(text: str) -> str:
    """`text` with LaTeX's special characters escaped, for text mode."""
    for special, escaped in _TEX_SPECIALS:
        text = text.replace(special, escaped)
    return text


def _field(value: Any, float_format: str) -> Any:
    """One CSV field: a number formatted, NaN / None empty, anything else as it is."""
    if value is None or isinstance(value, str):
        return "" if value is None else value
    if isinstance(value, bool | np.bool_):
        return str(bool(value)).lower()
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return float_format % value if math.isfinite(value) else ""
    return "" if pd.isna(value) else value


def to_csv(report: Report) -> str:
    """The plain CSV of `report.values` (no index, no comment line)."""
    fields = {}
    for column in report.values.columns:
        float_format = report.formats.get(column, report.float_format)
        fields[column] = [_field(v, float_format) for v in report.values[column]]
    return pd.DataFrame(fields, dtype=object).to_csv(index=False, lineterminator="\n")


def to_markdown(report: Report) -> str:
    """The header in italics, the table, then the caption and the notes as a list."""
    lines = [f"_{report.header}_", ""] if report.header else []
    # Cells are text already: no number parsing, no padding to a column's width.
    lines.append(report.shown.to_markdown(index=False, stralign=None, disable_numparse=True))
    lines.append("")
    lines += [f"- {note}" for note in (report.caption, *report.notes)]
    return "\n".join(lines) + "\n"


def to_latex(report: Report) -> str:
    """A booktabs table: caption (with the header), label, the tabular, notes below."""
    shown = report.shown.rename(columns=escape_tex).apply(lambda column: column.map(escape_tex))
    spec = "l" * report.label_columns + "c" * (shown.shape[1] - report.label_columns)
    caption = " ".join(t for t in (report.caption, report.header) if t)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{escape_tex(caption)}}}",
        rf"\label{{tab:{report.name}}}",
        shown.to_latex(index=False, escape=False, column_format=spec).rstrip("\n"),
        *(rf"\par\footnotesize {escape_tex(note)}" for note in report.notes),
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


_RENDERERS = {"csv": to_csv, "md": to_markdown, "tex": to_latex}


def write_report(report: Report, folder: str) -> list[str]:
    """Writes `<folder>/<name>.{csv,md,tex}`, each atomically; returns the paths in
    that order."""
    paths = []
    for ext in EXTENSIONS:
        path = os.path.join(folder, f"{report.name}.{ext}")
        write_text_atomically(path, _RENDERERS[ext](report))
        paths.append(path)
    return paths
