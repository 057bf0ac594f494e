"""The pipeline at FaceForensics++ scale: wall time and peak memory of every stage.

The generated dataset is built at a fraction of the official FF++ size (1,000
identities paired as FF++ pairs them: 360/70/70 pairs, so 720/140/140 videos per
source) and every stage runs on it with the smoke UBM, each as its own binary in its
own process, exactly as `make reproduce` runs them. Per stage the benchmark records
the wall time and the peak resident memory of the stage's process tree (the largest
of the process and the worker processes it waited for, as `wait4` reports them).
Time should grow linearly with the data and peak memory should stay flat, since no
stage may hold the data set in memory.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from data_prep.files import read_json
from experiments.pipeline.workdir import Workdir

FFPP_IDENTITIES = 1000  # FF++: 1,000 originals, one fake per method and original


@dataclasses.dataclass(frozen=True)
class StageRun:
    """One stage's measurement."""

    stage: str
    seconds: float
    peak_rss_mb: float
    exit_status: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def identities_at(fraction: float) -> int:
    """The identity count for `fraction` of FF++, rounded to an even number (pairs)."""
    count = int(round(FFPP_IDENTITIES * fraction / 2)) * 2
    if count < 6:
        raise ValueError(f"fraction {fraction} gives {count} identities; at least 6 are needed.")
    return count


def run_stage(stage: str, argv: Sequence[str], log_path: str) -> StageRun:
    """Runs one binary to completion; its output goes to `log_path`.

    Returns its wall time and the peak resident set of the process and of the
    children it waited for (Linux `ru_maxrss`, KiB).
    """
    start = time.monotonic()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return StageRun(
        stage, round(seconds, 2), round(usage.ru_maxrss / 1024.0, 1), process.returncode
    )


def stage_commands(
    workdir: str, config: str, identities: int, frames: int, workers: int, detector_epochs: int
) -> list[tuple[str, list[str]]]:
    """The stages of `make reproduce` as (name, argv) pairs."""
    common = [f"--config={config}", f"--workdir={workdir}"]

    def binary(name: str, *flags: str) -> list[str]:
        return [sys.executable, "-m", f"experiments.{name}", *common, *flags]

    return [
        (
            "make_synthetic_ffpp",
            binary(
                "make_synthetic_ffpp",
                f"--config.synthetic.identities={identities}",
                f"--config.synthetic.frames={frames}",
            ),
        ),
        ("prepare_faces", binary("prepare_faces", "--dataset=generated", f"--workers={workers}")),
        ("train_ubm", binary("train_ubm")),
        ("extract_likelihoods", binary("extract_likelihoods")),
        (
            "run_detection_known",
            binary(
                "run_detection", "--protocol=known", f"--config.detector.epochs={detector_epochs}"
            ),
        ),
        (
            "run_detection_loo",
            binary(
                "run_detection", "--protocol=loo", f"--config.detector.epochs={detector_epochs}"
            ),
        ),
        ("make_tables", binary("make_tables")),
    ]


def benchmark_scale(
    root: str,
    fraction: float,
    config: str = "smoke",
    frames: int = 2,
    workers: int = 2,
    detector_epochs: int = 2,
) -> dict[str, Any]:
    """Runs every stage on the generated dataset at `fraction` of FF++ under `root`.

    Returns a JSON-ready dict: the size (identities, videos, crops, test videos per
    class from the table inputs) and one `StageRun` per stage. A stage that fails
    stops the benchmark; its run is the last one listed.
    """
    identities = identities_at(fraction)
    workdir = os.path.join(root, f"fraction_{fraction:g}")
    os.makedirs(workdir, exist_ok=True)
    log_path = os.path.join(workdir, "stages.log")
    runs: list[StageRun] = []
    for stage, argv in stage_commands(
        workdir, config, identities, frames, workers, detector_epochs
    ):
        run = run_stage(stage, argv, log_path)
        runs.append(run)
        # prepare_faces exits 3 when some videos failed; the rest still counts.
        if run.exit_status not in (0, 3):
            break
    layout = Workdir(workdir)
    faces = read_json(os.path.join(layout.faces, "manifest.json")) or {}
    totals = faces.get("totals", {}).get("all", {})
    summary = read_json(os.path.join(layout.protocol("known"), "Deepfakes", "metrics.json")) or {}
    return {
        "config": config,
        "fraction": fraction,
        "identities": identities,
        "frames_per_video": frames,
        "videos": len(faces.get("videos", [])),
        "crops": totals.get("faces"),
        "test_counts_known_deepfakes": (summary.get("test") or {}).get("counts"),
        "stages": [r.to_json() for r in runs],
        "log": log_path,
    }
