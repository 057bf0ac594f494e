"""The run record: every stage's command line, and `results/run.json` built from them.

Each binary calls `record_command(workdir)` once its flags are parsed; this appends
one JSON line (stage, command, time) to the work directory's `commands.jsonl`.
`write_run_json` collects those commands with the configurations each stage saved in
its own folder, the seeds and the library versions into `results/run.json`, so a
table can be traced to the exact commands that made it (architecture.md, convention 6).
Paths come from `experiments.pipeline.workdir`.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from data_prep.datasets.generated import MARKER  # the generated dataset's settings file
from data_prep.files import read_json, write_json_atomically
from experiments.pipeline.workdir import (
    CONFIG_FILE,
    DETECTION,
    FACES,
    LIKELIHOODS,
    MANIFEST_FILE,
    UBM,
    Workdir,
)

# Distribution names of the libraries whose versions change results.
_LIBRARIES = (
    "tensorflow",
    "keras",
    "numpy",
    "scikit-learn",
    "dlib-bin",
    "opencv-python-headless",
    "pandas",
    "matplotlib",
    "absl-py",
)

_FACES_MANIFEST = f"{FACES}/{MANIFEST_FILE}"
# Stages and the files (relative to the workdir) in which each records its configuration;
# these are also the keys of `configs` in run.json.
_STAGE_CONFIGS = {
    # The resolved configuration the first stage recorded (experiments.cli).
    "run": (CONFIG_FILE,),
    FACES: (_FACES_MANIFEST,),
    UBM: (f"{UBM}/{CONFIG_FILE}",),
    LIKELIHOODS: (f"{LIKELIHOODS}/{CONFIG_FILE}", f"{LIKELIHOODS}/{MANIFEST_FILE}"),
    f"{DETECTION}_known": (f"{DETECTION}/known/{CONFIG_FILE}",),
    f"{DETECTION}_loo": (f"{DETECTION}/loo/{CONFIG_FILE}",),
}


def _layout(workdir: Workdir | str) -> Workdir:
    return Workdir(workdir) if isinstance(workdir, str) else workdir


def _stage_name(program: str) -> str:
    name = os.path.basename(program)
    name = name[: -len(".py")] if name.endswith(".py") else name
    return name.rsplit(".", 1)[-1]


def record_command(workdir: Workdir | str, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Appends the command line of the running stage to the workdir's `commands.jsonl`.

    Args:
      workdir: the run's work directory (a layout or its root; created if absent).
      argv: the program and its arguments; `sys.argv` by default. The program may be
        a path (`.../experiments/run_detection.py`) or a module name.

    Returns:
      The recorded entry: `stage`, `command` (as `python -m experiments.<stage> ...`)
      and `time` (UTC, ISO 8601).
    """
    argv = list(sys.argv if argv is None else argv)
    stage = _stage_name(argv[0]) if argv else "unknown"
    entry = {
        "stage": stage,
        "command": shlex.join(["python", "-m", f"experiments.{stage}", *argv[1:]]),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    workdir = _layout(workdir)
    os.makedirs(workdir.root, exist_ok=True)
    # One short line per append: concurrent stages never interleave within a line.
    with open(workdir.commands, "a") as f:
        f.write(json.dumps(entry) + "\n")
    return entry


def read_commands(workdir: Workdir) -> list[dict[str, Any]]:
    """Every recorded command of the run, oldest first (empty when none)."""
    path = workdir.commands
    if not os.path.exists(path):
        return []
    entries = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash; the rest still counts
    return entries


def library_versions() -> dict[str, str]:
    """Installed versions of Python and of the libraries that change results."""
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _find_seeds(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Every `seed` entry of a nested configuration, keyed by its dotted path."""
    seeds: dict[str, Any] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key == "seed" and not isinstance(value, dict | list):
                seeds[path] = value
            else:
                seeds.update(_find_seeds(value, path))
    return seeds


def _stage_configs(workdir: Workdir) -> dict[str, dict[str, Any] | None]:
    """{stage: {file: content} or None}; the faces manifest without its per-video list."""
    configs: dict[str, dict[str, Any] | None] = {}
    for stage, paths in _STAGE_CONFIGS.items():
        found = {p: read_json(os.path.join(workdir.root, p)) for p in paths}
        found = {p: v for p, v in found.items() if v is not None}
        for content in found.values():
            if isinstance(content, dict):
                content.pop("videos", None)  # one entry per video: thousands on FF++
        configs[stage] = found or None
    faces = (configs.get(FACES) or {}).get(_FACES_MANIFEST) or {}
    root = faces.get("ffpp_root")
    synthetic = read_json(os.path.join(root, MARKER)) if root else None
    configs["synthetic_dataset"] = (
        {MARKER: {"settings": synthetic.get("settings")}} if synthetic else None
    )
    return configs


def _previous_reports(workdir: Workdir) -> dict[str, Any]:
    """The `reports` of the run.json there is ({} where there is none or it is broken:
    a rebuild then starts them afresh)."""
    try:
        previous = read_json(workdir.run_json)
    except ValueError:
        return {}
    return (previous or {}).get("reports") or {}


def write_run_json(workdir: Workdir, reports: Mapping[str, dict[str, Any]] | None = None) -> str:
    """(Re)builds `results/run.json` from the files the stages saved.

    Holds: `configs` (per stage, its saved configuration or manifest, null where the
    stage has not run), `seeds` (every `seed` in them, keyed `<stage>.<path>`),
    `versions`, `platform`, `commands` (every recorded stage command, in order) and
    `reports`: per result table its caption, header and notes (`report.Report.record`),
    those of `reports` added to the ones run.json held, which a rebuild keeps.
    Returns the path.
    """
    configs = _stage_configs(workdir)
    seeds = {}
    for stage, files in configs.items():
        for content in (files or {}).values():
            seeds.update(_find_seeds(content, stage))
    run = {
        "workdir": workdir.root,
        "configs": configs,
        "seeds": seeds,
        "versions": library_versions(),
        "platform": platform.platform(),
        "commands": read_commands(workdir),
        "reports": {**_previous_reports(workdir), **(reports or {})},
    }
    write_json_atomically(workdir.run_json, run)
    return workdir.run_json
