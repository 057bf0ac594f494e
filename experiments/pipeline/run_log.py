"""The run record: every stage's command line, and `results/run.json` built from them.

Each binary calls `record_command(workdir)` once its flags are parsed; this appends
one JSON line (stage, command, time) to `WORKDIR/commands.jsonl`. `write_run_json`
collects those commands with the configurations each stage saved in its own folder,
the seeds and the library versions into `WORKDIR/results/run.json`, so a table can
be traced to the exact commands that made it (architecture.md, convention 6).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from data_prep.files import read_json, write_json_atomically

COMMANDS_FILE = "commands.jsonl"
RUN_JSON = os.path.join("results", "run.json")

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

# Stage folders and the files in which each records its configuration.
_STAGE_CONFIGS = {
    "faces": ("faces/manifest.json",),
    "ubm": ("ubm/config.json",),
    "likelihoods": ("likelihoods/config.json", "likelihoods/manifest.json"),
    "detection_known": ("detection/known/config.json",),
    "detection_loo": ("detection/loo/config.json",),
}


def _stage_name(program: str) -> str:
    name = os.path.basename(program)
    name = name[: -len(".py")] if name.endswith(".py") else name
    return name.rsplit(".", 1)[-1]


def record_command(workdir: str, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Appends the command line of the running stage to `WORKDIR/commands.jsonl`.

    Args:
      workdir: the run's work directory (created if absent).
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
    os.makedirs(workdir, exist_ok=True)
    # One short line per append: concurrent stages never interleave within a line.
    with open(os.path.join(workdir, COMMANDS_FILE), "a") as f:
        f.write(json.dumps(entry) + "\n")
    return entry


def read_commands(workdir: str) -> list[dict[str, Any]]:
    """Every recorded command of the run, oldest first (empty when none)."""
    path = os.path.join(workdir, COMMANDS_FILE)
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


def _stage_configs(workdir: str) -> dict[str, dict[str, Any] | None]:
    """{stage: {file: content} or None}; the faces manifest without its per-video list."""
    from data_prep.synthetic import MARKER  # the generated dataset's settings file

    configs: dict[str, dict[str, Any] | None] = {}
    for stage, paths in _STAGE_CONFIGS.items():
        found = {p: read_json(os.path.join(workdir, p)) for p in paths}
        found = {p: v for p, v in found.items() if v is not None}
        for content in found.values():
            if isinstance(content, dict):
                content.pop("videos", None)  # one entry per video: thousands on FF++
        configs[stage] = found or None
    faces = (configs.get("faces") or {}).get("faces/manifest.json") or {}
    root = faces.get("ffpp_root")
    synthetic = read_json(os.path.join(root, MARKER)) if root else None
    configs["synthetic_dataset"] = (
        {MARKER: {"settings": synthetic.get("settings")}} if synthetic else None
    )
    return configs


def write_run_json(workdir: str) -> str:
    """(Re)builds `WORKDIR/results/run.json` from the files the stages saved.

    Holds: `configs` (per stage, its saved configuration or manifest, null where the
    stage has not run), `seeds` (every `seed` in them, keyed `<stage>.<path>`),
    `versions`, `platform` and `commands` (every recorded stage command, in order).
    Returns the path.
    """
    configs = _stage_configs(workdir)
    seeds = {}
    for stage, files in configs.items():
        for content in (files or {}).values():
            seeds.update(_find_seeds(content, stage))
    run = {
        "workdir": workdir,
        "configs": configs,
        "seeds": seeds,
        "versions": library_versions(),
        "platform": platform.platform(),
        "commands": read_commands(workdir),
    }
    path = os.path.join(workdir, RUN_JSON)
    write_json_atomically(path, run)
    return path
